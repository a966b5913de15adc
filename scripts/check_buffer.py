#!/usr/bin/env python3
"""Check any importable buffer exporter against CPython's buffer rules.

    python scripts/check_buffer.py "b'abc'" "array.array('d', [1, 2])"
    python scripts/check_buffer.py "numpy.arange(6.0).reshape(2, 3).T"
    python scripts/check_buffer.py "mmap:mmap(-1, 4096)"        # module:expression
    python scripts/check_buffer.py --strict pontoneer_demo.FloatBuffer.from_count\\(3\\)
    python scripts/check_buffer.py --json "memoryview(b'xy')" > report.json

Each OBJECT is a Python expression; the modules it names are imported on first use
(``numpy.zeros(3)`` imports numpy), or ``module:expression`` evaluates the expression in that
module's namespace.  The check is pontoneer's exporter conformance kit
(``pontoneer_conformance.report``, the Rust ``pontoneer::conformance::check`` and the C
``pcf_check``): it learns the geometry from the exporter itself, sends every request and
reports every rule broken.  Build the module first with
``python setup.py build_ext --inplace`` in the repository root.

Exit status: 0 when every object conforms, 1 when one does not, 2 on a usage or import error.
"""

import argparse
import importlib
import json
import os
import re
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_kit():
    """Import pontoneer_conformance, from the repository root if it is not installed."""
    try:
        return importlib.import_module("pontoneer_conformance")
    except ImportError:
        sys.path.insert(0, REPO_ROOT)
        try:
            return importlib.import_module("pontoneer_conformance")
        except ImportError as exc:
            raise SystemExit(
                f"check_buffer: cannot import pontoneer_conformance ({exc}); build it with "
                f"`python setup.py build_ext --inplace` in {REPO_ROOT}"
            ) from None


_MISSING_NAME = re.compile(r"name '([A-Za-z_][A-Za-z0-9_]*)' is not defined")


def evaluate(text):
    """The object `text` names: ``module:expression`` or an expression whose free names
    that are modules get imported."""
    if ":" in text and re.fullmatch(r"[A-Za-z_][\w.]*", text.split(":", 1)[0]):
        module_name, expr = text.split(":", 1)
        module = importlib.import_module(module_name)
        return eval(expr, dict(vars(module)))  # noqa: S307 (a command-line tool)
    namespace = {}
    for _ in range(32):
        try:
            return eval(text, namespace)  # noqa: S307
        except NameError as exc:
            name = getattr(exc, "name", None)
            if name is None:
                match = _MISSING_NAME.search(str(exc))
                name = match.group(1) if match else None
            if name is None or name in namespace:
                raise
            namespace[name] = importlib.import_module(name)
        except AttributeError as exc:
            # `pkg.sub.attr` where `pkg.sub` is a submodule not imported yet
            obj = getattr(exc, "obj", None)
            attr = getattr(exc, "name", None)
            if obj is None or attr is None or not hasattr(obj, "__path__"):
                raise
            importlib.import_module(f"{obj.__name__}.{attr}")
    raise RuntimeError(f"could not resolve the names in {text!r}")


def grouped(violations):
    """Violations grouped by field and rule (numbers folded), biggest group first."""
    groups = {}
    for v in violations:
        key = (v["field"], re.sub(r"-?\d+", "#", v["rule"]))
        groups.setdefault(key, []).append(v)
    return sorted(groups.values(), key=len, reverse=True)


def print_report(label, report, verbose, show_requests, out):
    n = len(report["violations"])
    verdict = "conforming" if n == 0 else f"NOT CONFORMING ({n} violation{'s' * (n != 1)})"
    granted = sum(q["granted"] for q in report["requests"])
    print(
        f"{label}: {verdict}; {report['checks']} checks over {len(report['requests'])} requests "
        f"({granted} granted), {report['policy']} policy, Python {report['python_version']}",
        file=out,
    )
    t = report["truth"]
    if t is None:
        print("  truth: unknown (every probe was refused)", file=out)
    else:
        fmt = "?" if t["format"] is None else repr(t["format"])
        print(
            f"  truth (from {t['request']}): ndim {t['ndim']}, shape {tuple(t['shape'])}, "
            f"strides {tuple(t['strides'])}, format {fmt}, itemsize {t['itemsize']}, "
            f"len {t['len']}, readonly {t['readonly']}, C-contiguous {t['c_contiguous']}, "
            f"F-contiguous {t['f_contiguous']}" + (" (immortal)" if t["immortal"] else ""),
            file=out,
        )
    if verbose:
        for v in report["violations"]:
            print(f"  {v['message']}", file=out)
    else:
        for group in grouped(report["violations"]):
            first = group[0]
            requests = []
            for v in group:
                if v["request"] not in requests:
                    requests.append(v["request"])
            more = f", ... ({len(requests) - 4} more)" if len(requests) > 4 else ""
            print(f"  {len(group):5d}x {first['message']}", file=out)
            print(f"         on {', '.join(requests[:4])}{more}", file=out)
    if show_requests:
        for q in report["requests"]:
            print(
                f"  [{q['phase']:6s}] {q['request']:<34s} {q['expect']:<15s} {q['detail']}",
                file=out,
            )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Check buffer exporters against CPython's buffer rules "
        "(pontoneer's exporter conformance kit).",
        epilog="Exit status: 0 all conform, 1 a violation was found, 2 usage/import error.",
    )
    parser.add_argument("objects", nargs="+", metavar="OBJECT",
                        help="a Python expression, or module:expression")
    parser.add_argument("--strict", action="store_true",
                        help="pontoneer's (memoryview's) policy instead of everything the rules allow")
    parser.add_argument("--exports", metavar="EXPR",
                        help="a callable (expression) returning an object's live export count")
    parser.add_argument("--json", action="store_true", help="print the full reports as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="every violation, ungrouped")
    parser.add_argument("--requests", action="store_true", help="also list every request made")
    args = parser.parse_args(argv)

    kit = load_kit()
    try:
        exports = evaluate(args.exports) if args.exports else None
    except Exception as exc:  # noqa: BLE001 (reported, exit 2)
        print(f"check_buffer: --exports {args.exports!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    reports = {}
    status = 0
    for text in args.objects:
        try:
            obj = evaluate(text)
        except Exception as exc:  # noqa: BLE001
            print(f"check_buffer: {text!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        try:
            report = kit.report(obj, args.strict, exports)
        except TypeError as exc:
            print(f"check_buffer: {text!r}: {exc}", file=sys.stderr)
            return 2
        reports[text] = report
        if report["violations"]:
            status = 1
        if not args.json:
            print_report(text, report, args.verbose, args.requests, sys.stdout)
    if args.json:
        json.dump(reports, sys.stdout, indent=1)
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())
