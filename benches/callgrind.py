"""Instructions and heap allocations per operation under valgrind's callgrind: repeatable
figures on a noisy machine (the same binary, inputs and environment give the same counts).

    python setup.py -q build_ext --inplace && python benches/callgrind.py

For each statement and each module (pontoneer_demo and the C reference pontoneer_ref), the
statement runs in a function-local loop N1 and N2 times in two separate callgrind runs; the
per-op cost is the difference divided by N2 - N1 (start-up and warm-up cancel out), minus the
same figure for an empty loop body. `malloc` calls are counted the same way from the call graph,
so the "allocs/op" column is the number of C-heap allocations one operation makes (pymalloc's
small-object allocations are not malloc calls).
"""

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

STATEMENTS = [
    ("len(b)", "len(b)"),
    ("b[5]", "b[5]"),
    ("FloatBuffer()", "FloatBuffer()"),
    ("memoryview(b)", "memoryview(b).release()"),
    ("b + c", "b + c"),
]

DRIVER = r"""
import sys
sys.path.insert(0, {path!r})
import {module} as m
FloatBuffer = m.FloatBuffer
def run(b, c, FloatBuffer, n):
    for _ in range(n):
        {stmt}
b = FloatBuffer.from_count(10)
c = FloatBuffer.from_count(10)
run(b, c, FloatBuffer, 2000)          # warm up: specialisation, caches
run(b, c, FloatBuffer, {n})
"""


# --all: every bench.py operation, on bench.py's own objects (benches/bench.py `namespace`:
# b has 1000 items, s and t 16, m is Matrix(4, 4), a starts empty), bound as locals.
ALL_DRIVER = r"""
import sys
sys.path.insert(0, {path!r})
sys.path.insert(0, {benches!r})
import {module} as mod
import bench
np = None
if {numpy}:  # only the statements that use numpy pay for importing it
    import numpy as np
ns = bench.namespace(mod, np)
names = sorted(ns)
g = {{}}
exec("def run(n, " + ", ".join(names) + "):\n    for _ in range(n):\n        {stmt}\n", g)
args = [ns[k] for k in names]
g["run"](2000, *args)
g["run"]({n}, *args)
"""


def measure(module, path, stmt, n, driver=DRIVER):
    """(instructions, malloc calls) of one run with `n` iterations."""
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "drive.py")
        out = os.path.join(tmp, "callgrind.out")
        with open(script, "w") as f:
            f.write(driver.format(path=path, benches=HERE, module=module, stmt=stmt, n=n,
                                  numpy=any(w in stmt for w in ("frombuffer", "asarray"))))
        # One BLAS thread: numpy's OpenBLAS worker threads spin while idle, which would make
        # the instruction counts of the numpy rows change from run to run.
        env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1",
                   OMP_NUM_THREADS="1")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, script],
            capture_output=True, text=True, env=env,
        )
        if proc.returncode != 0:
            raise SystemExit(f"callgrind failed for {module}: {stmt}\n{proc.stderr[-2000:]}")
        instructions = int(re.search(r"Collected : (\d+)", proc.stderr).group(1))
        return instructions, malloc_calls(out)


def malloc_calls(path):
    """Calls to malloc/calloc/realloc recorded in a callgrind call graph."""
    names = {}
    total = 0
    current_callee = None
    with open(path) as f:
        for line in f:
            m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
            if m:
                fid, name = m.group(1), m.group(2)
                if name:
                    names[fid] = name.strip()
                current_callee = names.get(fid)
                continue
            if line.startswith("calls=") and current_callee in ("malloc", "calloc", "realloc"):
                total += int(line.split("=")[1].split()[0])
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n1", type=int, default=20000)
    parser.add_argument("--n2", type=int, default=60000)
    parser.add_argument("--all", action="store_true",
                        help="every bench.py operation on bench.py's objects (about ten "
                             "minutes) instead of the five headline statements")
    parser.add_argument("--filter", default="",
                        help="with --all: only the operations whose label contains this text")
    parser.add_argument("--ref-data-alloc", choices=("pymem", "malloc"), default="pymem",
                        help="the C reference's allocator for items: PyMem_* (default) or "
                             "malloc (allocator-matched with pontoneer_demo's Rust Vec)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    sys.path.insert(0, HERE)
    import build_ref  # noqa: E402  (benches/build_ref.py)

    ref_dir = os.path.join(HERE, ".build")
    if args.ref_data_alloc != "pymem":
        ref_dir = os.path.join(ref_dir, args.ref_data_alloc)
    build_ref.build(ref_dir, "pontoneer_ref", data_alloc=args.ref_data_alloc)
    modules = [("pontoneer_demo", ROOT), ("pontoneer_ref", ref_dir)]
    span = args.n2 - args.n1

    if args.all:
        sys.path.insert(0, HERE)
        import bench  # noqa: E402  (benches/bench.py)

        try:
            import numpy  # noqa: F401
            have_numpy = True
        except ImportError:
            have_numpy = False
        statements = [(label.split("  (")[0], stmt) for label, stmt, needs_np in bench.OPERATIONS
                      if (have_numpy or not needs_np) and args.filter.lower() in label.lower()]
        driver = ALL_DRIVER
    else:
        statements, driver = STATEMENTS, DRIVER

    def per_op(module, path, stmt):
        i1, m1 = measure(module, path, stmt, args.n1, driver)
        i2, m2 = measure(module, path, stmt, args.n2, driver)
        return (i2 - i1) / span, (m2 - m1) / span

    print(f"C reference items allocated with {args.ref_data_alloc}")
    print(f"python {sys.version.split()[0]}; per-op figures = (run of {args.n2} - run of {args.n1}) / {span}, "
          "minus the empty loop")
    base = {mod: per_op(mod, path, "pass") for mod, path in modules}
    width = max(16, max(len(label) for label, _ in statements) + 2)
    print(f"{'statement':<{width}}{'pontoneer instr':>16}{'C instr':>10}{'ratio':>8}{'pontoneer allocs':>18}{'C allocs':>10}")
    ratios = []
    for label, stmt in statements:
        (pi, pm), (ci, cm) = [
            tuple(x - y for x, y in zip(per_op(mod, path, stmt), base[mod])) for mod, path in modules
        ]
        ratios.append(pi / ci)
        print(f"{label:<{width}}{pi:>16.1f}{ci:>10.1f}{pi / ci:>8.3f}{pm:>18.3f}{cm:>10.3f}",
              flush=True)
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"geometric mean of {len(ratios)} instruction ratios: {geo:.3f}")


if __name__ == "__main__":
    main()
