"""pontoneer_demo against the hand-written C reference, operation by operation.

    python setup.py -q build_ext --inplace     # once: builds pontoneer_demo into the repo root
    python benches/bench.py                    # full run (under a minute)
    python benches/bench.py --quick            # fewer, shorter rounds
    python benches/bench.py --filter matrix    # only operations whose name contains "matrix"
    python benches/bench.py --clock cpu        # on a busy machine: CPU time of this thread

Both modules are imported into this one process: `pontoneer_demo` from the repository root
(or --demo-path / $PONTONEER_DEMO_PATH) and `pontoneer_ref`, the C reference in
benches/ref_c/ref_demo.c, which is (re)built into benches/.build/ when missing or out of date.

For every operation of the demo contract the same statement, with the same setup, is timed for
both modules: a timeit loop calibrated to take about --target-ms, repeated for --rounds rounds
in which the two modules run back to back (which one goes first alternates), with the cost of
the empty loop (`pass`, same setup, same iteration count, measured in the same rounds)
subtracted. The table gives the median ns per operation and the min..max over the rounds for
each module, and the ratio pontoneer / C: the median over the rounds of the per-round ratio.
1.00 is C speed, 1.10 is 10% slower. The last line is the geometric mean of the ratios.
See README.md.

Nothing here asserts anything: a benchmark never fails, it only reports.
"""

import argparse
import datetime
import gc
import importlib
import math
import os
import platform
import statistics
import sys
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD_DIR = os.path.join(HERE, ".build")
REF_NAME = "pontoneer_ref"
SLOW = 1.10  # ratios above this are flagged in the table
# (rounds, ms per timing loop). Many short rounds rather than a few long ones: on a small shared
# machine whose speed shifts every few hundred ms, they sample both modules under the same
# conditions more often: timed against itself with --clock cpu on a busy 2-CPU VM, the C
# reference stayed within 0.98..1.04 per row (15 rounds of 30 ms: 0.84..1.10) for the same
# total time.
FULL = (41, 10.0)
QUICK = (11, 5.0)


# --------------------------------------------------------------------------------------------
# The operations. Each statement runs against the names bound by `namespace(mod)`, which are
# locals of the timing function (LOAD_FAST), exactly as in timeit's own setup.
# --------------------------------------------------------------------------------------------

# (label, statement, needs numpy)
OPERATIONS = [
    ("FloatBuffer()", "FloatBuffer()", False),
    ("FloatBuffer.from_count(1000)", "FloatBuffer.from_count(1000)", False),
    ("len(b)", "len(b)", False),
    ("b[5]", "b[5]", False),
    ("b[-1]", "b[-1]", False),
    ("b[5] = x", "b[5] = x", False),
    ("y in b  (hit at index 5)", "y in b", False),
    ("s + t  (16 + 16 items)", "s + t", False),
    ("-s  (16 items)", "-s", False),
    ("s == t  (16 equal items)", "s == t", False),
    ("b.sum()  (1000 items)", "b.sum()", False),
    ("a.append(x)", "a.append(x)", False),
    ("memoryview(b) create+release", "memoryview(b).release()", False),
    ("numpy.frombuffer(b, float64)", "frombuffer(b, float64)", True),
    ("bytes(s)  (16 items)", "bytes(s)", False),
    ("Matrix(4, 4)", "Matrix(4, 4)", False),
    ("m.get(1, 2)", "m.get(1, 2)", False),
    ("m.set(1, 2, x)", "m.set(1, 2, x)", False),
    ("m.shape", "m.shape", False),
    ("memoryview(m) create+release", "memoryview(m).release()", False),
    ("numpy.asarray(m)", "asarray(m)", True),
]


def namespace(mod, np):
    """Fresh objects for one timing loop; identical for both modules."""
    ns = {
        "FloatBuffer": mod.FloatBuffer,
        "Matrix": mod.Matrix,
        "a": mod.FloatBuffer(),  # append target: starts empty every loop
        "b": mod.FloatBuffer.from_count(1000),
        "s": mod.FloatBuffer.from_count(16),
        "t": mod.FloatBuffer.from_count(16),
        "m": mod.Matrix(4, 4),
        "x": 1.5,
        "y": 5.0,
    }
    if np is not None:
        ns.update(frombuffer=np.frombuffer, asarray=np.asarray, float64=np.float64)
    return ns


# --clock wall (the default) measures elapsed time; --clock cpu measures this thread's CPU time,
# which leaves out the time the thread spends preempted on a busy machine.
CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
clock = CLOCKS["wall"]


def make_timer(stmt, ns):
    setup = "\n".join(f"{name} = _ns[{name!r}]" for name in ns)
    return timeit.Timer(stmt, setup=setup, timer=clock, globals={"_ns": ns})


def run_loop(stmt, mod, np, number):
    """Total ns for `number` executions of `stmt` (timeit disables the GC while timing)."""
    return make_timer(stmt, namespace(mod, np)).timeit(number)


def calibrate(stmt, mods, np, target_ns):
    """An iteration count for which the slowest module's loop takes about target_ns."""
    number = 1
    while True:
        longest = max(run_loop(stmt, mod, np, number) for mod in mods)
        if longest >= target_ns / 5 or number >= 10**9:
            return max(1, int(number * target_ns / max(longest, 1)))
        number *= 10


def bench_operation(stmt, ref, pon, np, rounds, target_ns):
    number = calibrate(stmt, (ref, pon), np, target_ns)
    totals = {"ref": [], "pon": [], "empty": []}
    for r in range(rounds):
        order = [("ref", ref), ("pon", pon)]
        if r % 2:
            order.reverse()
        # the two modules run back to back (their per-round ratio compares like with like),
        # the empty loop just before them
        totals["empty"].append(run_loop("pass", ref, np, number))
        for key, mod in order:
            totals[key].append(run_loop(stmt, mod, np, number))
    empty = statistics.median(totals["empty"])
    per_op = {
        key: [(total - empty) / number for total in totals[key]] for key in ("ref", "pon")
    }
    return number, empty / number, per_op


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def import_from(directory, name):
    sys.path.insert(0, directory)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(directory)


def load_pontoneer(demo_path):
    try:
        mod = import_from(demo_path, "pontoneer_demo")
    except ImportError as exc:
        sys.exit(
            f"cannot import pontoneer_demo from {demo_path}: {exc}\n"
            f"build it first:  cd {ROOT} && python setup.py -q build_ext --inplace"
        )
    if os.path.dirname(os.path.abspath(mod.__file__)) != os.path.abspath(demo_path):
        print(f"note: pontoneer_demo came from {mod.__file__}, not {demo_path}", file=sys.stderr)
    return mod


def load_reference(data_alloc="pymem"):
    out_dir = BUILD_DIR if data_alloc == "pymem" else os.path.join(BUILD_DIR, data_alloc)
    new = not os.path.isdir(BUILD_DIR)
    os.makedirs(BUILD_DIR, exist_ok=True)
    ignore = os.path.join(BUILD_DIR, ".gitignore")
    if new or not os.path.exists(ignore):
        with open(ignore, "w") as f:  # build output: keep the whole directory out of git
            f.write("*\n")
    sys.path.insert(0, HERE)
    try:
        import build_ref
    finally:
        sys.path.remove(HERE)
    try:
        build_ref.build(out_dir, REF_NAME, data_alloc=data_alloc)
    except Exception as exc:
        sys.exit(f"cannot build the C reference: {exc}")
    return import_from(out_dir, REF_NAME)


def smoke_test(stmt, ref, pon, np):
    """Run the statement once per module; the result types must agree. Returns an error text."""
    kinds = []
    for mod in (ref, pon):
        ns = namespace(mod, np)
        try:
            try:
                code = compile(f"_result = ({stmt})", "<bench>", "exec")
            except SyntaxError:  # a statement, not an expression (b[5] = x)
                code = compile(stmt, "<bench>", "exec")
            exec(code, ns)
        except Exception as exc:
            return f"{mod.__name__}: {type(exc).__name__}: {exc}"
        result = ns.get("_result")
        kinds.append("FloatBuffer" if type(result) is mod.FloatBuffer else
                     "Matrix" if type(result) is mod.Matrix else type(result).__name__)
    if kinds[0] != kinds[1]:
        return f"results differ in type: {kinds[0]} (C) vs {kinds[1]} (pontoneer)"
    return None


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt_ns(value):
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Time pontoneer_demo against the hand-written C reference.",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK[0]} rounds of ~{QUICK[1]:g} ms instead of "
                             f"{FULL[0]} of ~{FULL[1]:g} ms")
    parser.add_argument("--filter", default="",
                        help="only operations whose label contains this (case-insensitive)")
    parser.add_argument("--rounds", type=int, help="rounds per operation")
    parser.add_argument("--target-ms", type=float, help="duration of one timing loop")
    parser.add_argument("--demo-path",
                        default=os.environ.get("PONTONEER_DEMO_PATH") or ROOT,
                        help="directory holding pontoneer_demo "
                             "(default: $PONTONEER_DEMO_PATH or the repository root)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: time.perf_counter_ns (default); cpu: time.thread_time_ns, "
                             "which excludes time spent preempted on a busy machine")
    parser.add_argument("--ref-data-alloc", choices=("pymem", "malloc"), default="pymem",
                        help="the C reference's allocator for items: PyMem_* (default, as "
                             "CPython's containers) or malloc (as a Rust Vec: separates the "
                             "layer's cost from the allocator's)")
    parser.add_argument("--list", action="store_true", help="list the operations and exit")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]

    rounds = args.rounds or (QUICK if args.quick else FULL)[0]
    target_ms = args.target_ms or (QUICK if args.quick else FULL)[1]
    operations = [op for op in OPERATIONS if args.filter.lower() in op[0].lower()]
    if args.list:
        for label, stmt, _ in OPERATIONS:
            print(f"{label:34} {stmt}")
        return
    if not operations:
        sys.exit(f"no operation matches --filter {args.filter!r}; see --list")

    pon = load_pontoneer(os.path.abspath(args.demo_path))
    ref = load_reference(args.ref_data_alloc)
    try:
        import numpy as np
    except ImportError:
        np = None

    print(f"date:      {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"platform:  {platform.platform()}  ({os.cpu_count()} CPUs)")
    print(f"python:    {sys.version.split()[0]} ({platform.python_implementation()}), "
          f"numpy {np.__version__ if np else 'not installed'}")
    print(f"pontoneer: {pon.__file__}")
    print(f"C:         {ref.__file__}  (items allocated with "
          f"{'PyMem_*' if args.ref_data_alloc == 'pymem' else 'malloc, allocator-matched'})")
    print(f"method:    {rounds} rounds x ~{target_ms:g} ms per module and operation, "
          f"alternating order; empty-loop cost subtracted; ns/op = median over rounds; "
          f"clock: {clock.__name__}")
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        cpus = os.cpu_count() or 1
        print(f"load:      {load:.2f} (1-minute average, {cpus} CPUs)")
        if load > 0.75 * cpus and clock is CLOCKS["wall"]:
            print("warning:   the machine is busy; elapsed times include time spent preempted. "
                  "--clock cpu measures this thread's CPU time instead.")
    print()

    header = (f"{'operation':34} {'pontoneer':>9} {'min..max':>17}   "
              f"{'C':>9} {'min..max':>17}   {'ratio':>6}")
    print(header)
    print("-" * len(header))
    ratios, slow, skipped = [], [], []
    gc.collect()
    for label, stmt, needs_numpy in operations:
        if needs_numpy and np is None:
            skipped.append(f"{label}: numpy is not installed")
            continue
        error = smoke_test(stmt, ref, pon, np)
        if error:
            skipped.append(f"{label}: {error}")
            continue
        _, _, per_op = bench_operation(stmt, ref, pon, np, rounds, target_ms * 1e6)
        p, c = per_op["pon"], per_op["ref"]
        p_med, c_med = statistics.median(p), statistics.median(c)
        # The ratio pairs the two loops of each round (run back to back, under the same machine
        # conditions) and takes the median of those per-round ratios: on a busy machine whose
        # speed shifts between rounds this is much steadier than p_med / c_med.
        paired = [pr / cr for pr, cr in zip(p, c) if cr > 0]
        ratio = statistics.median(paired) if paired else float("nan")
        if ratio > 0:  # not NaN, and not a loop that measured below the empty loop
            ratios.append(ratio)
        flag = "  *" if ratio > SLOW else ""
        if ratio > SLOW:
            slow.append(label)
        print(f"{label:34} {fmt_ns(p_med):>9} {fmt_ns(min(p)) + '..' + fmt_ns(max(p)):>17}   "
              f"{fmt_ns(c_med):>9} {fmt_ns(min(c)) + '..' + fmt_ns(max(c)):>17}   "
              f"{ratio:6.2f}x{flag}", flush=True)
    print("-" * len(header))
    if ratios:
        geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geometric mean of {len(ratios)} ratios (pontoneer / C): {geomean:.3f}x")
    if slow:
        print(f"* more than {SLOW:.2f}x the C time: {', '.join(slow)}")
    for line in skipped:
        print(f"skipped: {line}")


if __name__ == "__main__":
    main()
