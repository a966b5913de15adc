"""Helpers for scripts/valgrind.sh (plain Python, no dependencies).

    python tests/leaks/vgtool.py supp LOG... -o tests/leaks/python.supp
        Collects the suppressions that ``valgrind --gen-suppressions=all`` printed into the
        logs, trims each call stack to its top frames (``...`` matches the rest), drops
        duplicates, names them and writes a suppression file.

    python tests/leaks/vgtool.py summary LOG...
        Per log: the error count (and how many were suppressed), the definitely/indirectly
        lost bytes, and every unsuppressed error or definite leak, marked ``PONTONEER`` when
        its stack goes through pontoneer (a Rust frame of the crate, its test modules, or one
        of the pontoneer_*.so / test-binary objects). Exit status 1 when any log has an
        unsuppressed error (leaks of the checked kind count as errors), 0 otherwise.
"""

import argparse
import collections
import os
import re
import sys

# How many frames of a generated suppression to keep. Deep frames describe the Python-level
# call path (which module was being imported, which test ran), which differs between the
# pure-Python generation run and the checked runs; the top frames say what CPython, numpy
# or glibc did. A libc string routine on top (SIMD over-reads valgrind does not intercept,
# ld.so's startup strncmp) is a false positive wherever it is called from: keep 4 frames.
# Everything else keeps 12, enough to name the CPython or numpy function above the allocator
# wrappers, so that an allocation made by pontoneer (which has its own frames in the top 12)
# never matches.
FRAMES_DEFAULT = 12
FRAMES_LIBC = 4
LIBC_TOP = re.compile(r"^fun:(__)?(str|mem|wmem|wcs|stp)[a-z0-9_]*$")

PONTONEER = re.compile(
    r"pontoneer|pontoneer_demo|pontoneer_testmod|pontoneer_conformance|testmod::|"
    r"/embedded-[0-9a-f]+|/capi_buffer-[0-9a-f]+|buffer_harness|conformance\.c"
)


def parse_suppressions(text):
    """Yield (kind, extra-lines, frames) for every ``{ ... }`` block in a valgrind log."""
    for block in re.findall(r"^\{\n(.*?)^\}", text, flags=re.S | re.M):
        lines = [l.strip() for l in block.splitlines() if l.strip()]
        if len(lines) < 3:
            continue
        kind = lines[1]
        extra = [l for l in lines[2:] if not (l.startswith(("fun:", "obj:")) or l == "...")]
        frames = [l for l in lines[2:] if l.startswith(("fun:", "obj:")) or l == "..."]
        yield kind, extra, frames


ALLOCATOR = re.compile(
    r"^fun:(malloc|calloc|realloc|_PyMem_\w+|PyMem_\w+|PyObject_(Malloc|Calloc|Realloc)|"
    r"gc_alloc|_PyObject_GC_New\w*|_PyObject_New\w*)$"
)


def trim(frames, kind, cpython_obj):
    """The frames a suppression keeps (see FRAMES_DEFAULT)."""
    if kind == "Memcheck:Leak" and cpython_obj:
        # A float allocated by CPython itself (its caller is in libpython) and unreachable at
        # exit: seen from os.stat, marshal and the parser, a different site each run. Keep
        # the allocator chain and PyFloat_FromDouble, and accept any caller in libpython (a
        # float made by pontoneer has a pontoneer frame there and does not match).
        for i, fr in enumerate(frames):
            if not ALLOCATOR.match(fr):
                if fr == "fun:PyFloat_FromDouble" and i + 1 < len(frames):
                    return frames[:i + 1] + [f"obj:{cpython_obj}", "..."]
                break
    keep = FRAMES_LIBC if frames and LIBC_TOP.match(frames[0]) else FRAMES_DEFAULT
    if len(frames) > keep:
        return frames[:keep] + ["..."]
    return frames


def cmd_supp(args):
    seen = collections.OrderedDict()
    for path in args.logs:
        with open(path, errors="replace") as f:
            text = f.read()
        for kind, extra, frames in parse_suppressions(text):
            if any(PONTONEER.search(fr) for fr in frames):
                # never suppress anything of ours, whatever run it came from
                continue
            frames = trim(frames, kind, args.cpython_obj)
            key = (kind, tuple(extra), tuple(frames))
            seen.setdefault(key, None)
    out = []
    out.append("# Valgrind suppressions for CPython's (and numpy's, glibc's) own noise, generated")
    out.append("# by `bash scripts/valgrind.sh --regen-supp` from pure-Python runs (no pontoneer")
    out.append("# module imported) under the same interpreter, PYTHONMALLOC and valgrind as the")
    out.append("# checked runs; stacks trimmed by tests/leaks/vgtool.py (12 top frames, 4 when a")
    out.append("# libc string routine is on top, any libpython caller for floats CPython leaves")
    out.append("# unreachable at exit). Do not edit by hand: regenerate.")
    for n, (kind, extra, frames) in enumerate(seen, 1):
        named = [f for f in frames if f != "..." and not ALLOCATOR.match(f)] or frames
        top = "/".join(f.split(":", 1)[-1].rsplit("/", 1)[-1] for f in named[:3])
        name = f"py-{n:03d}-{kind.split(':')[-1]}-{top}"
        out.append("{")
        out.append(f"   {name}")
        out.append(f"   {kind}")
        out.extend(f"   {l}" for l in extra)
        out.extend(f"   {l}" for l in frames)
        out.append("}")
    with open(args.output, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {len(seen)} suppressions to {args.output}")
    return 0


RECORD_START = re.compile(
    r"^==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|"
    r"Mismatched free|Source and destination overlap|Argument '.*' of function|"
    r"[\d,]+ (\([\d,]+ direct, [\d,]+ indirect\) )?bytes in [\d,]+ blocks are definitely lost)"
)


def records(text):
    """Unsuppressed error/leak records: list of (headline, frame lines)."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = RECORD_START.match(lines[i])
        if not m:
            i += 1
            continue
        head = lines[i].split("== ", 1)[1]
        frames = []
        i += 1
        while i < len(lines) and re.match(r"^==\d+==\s+(at|by|Address|Uninit|  )", lines[i]):
            frames.append(lines[i].split("== ", 1)[1].strip())
            i += 1
        out.append((head, frames))
    # with -v valgrind lists every error context a second time at exit: keep the first
    seen, unique = set(), []
    for head, frames in out:
        key = (re.sub(r" in loss record .*", "", head), tuple(frames))
        if key not in seen:
            seen.add(key)
            unique.append((head, frames))
    return unique


def cmd_summary(args):
    status = 0
    for path in args.logs:
        if not os.path.exists(path):
            continue
        with open(path, errors="replace") as f:
            text = f.read()
        cmd = re.search(r"^==\d+== Command: (.*)$", text, re.M)
        errs = re.search(r"ERROR SUMMARY: ([\d,]+) errors from ([\d,]+) contexts "
                         r"\(suppressed: ([\d,]+) from ([\d,]+)\)", text)
        lost = {k: re.search(rf"{k} lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
                for k in ("definitely", "indirectly", "possibly")}
        recs = records(text)
        ours = [r for r in recs if any(PONTONEER.search(fr) for fr in r[1][:args.depth])]
        print(f"== {path}")
        if cmd:
            print(f"   command: {cmd.group(1)[:160]}")
        if not errs:
            print("   no ERROR SUMMARY (the process did not finish normally?)")
            status = 1
            continue
        n_err = int(errs.group(1).replace(",", ""))
        print(f"   errors: {errs.group(1)} from {errs.group(2)} contexts "
              f"(suppressed: {errs.group(3)} from {errs.group(4)})")
        for k, m in lost.items():
            if m:
                print(f"   {k} lost: {m.group(1)} bytes in {m.group(2)} blocks")
            elif k == "definitely":
                print("   definitely lost: 0 bytes in 0 blocks (no leak summary line)")
        print(f"   unsuppressed records: {len(recs)}, through pontoneer: {len(ours)}")
        for head, frames in recs[:args.show]:
            tag = "PONTONEER " if (head, frames) in ours else ""
            print(f"   - {tag}{head}")
            for fr in frames[:args.frames]:
                print(f"       {fr[:200]}")
        if n_err:
            status = 1
    return status


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("supp")
    s.add_argument("logs", nargs="+")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--cpython-obj", default="",
                   help="valgrind obj: pattern of the object holding CPython's code "
                        "(libpython3.x.so or the python executable)")
    m = sub.add_parser("summary")
    m.add_argument("logs", nargs="+")
    m.add_argument("--show", type=int, default=20, help="records to print per log")
    m.add_argument("--frames", type=int, default=14, help="frames to print per record")
    m.add_argument("--depth", type=int, default=40,
                   help="frames searched for pontoneer when attributing a record")
    args = ap.parse_args()
    return cmd_supp(args) if args.cmd == "supp" else cmd_summary(args)


if __name__ == "__main__":
    sys.exit(main())
