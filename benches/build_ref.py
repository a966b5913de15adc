"""Build the hand-written C reference (benches/ref_c/ref_demo.c) for the running interpreter.

    python benches/build_ref.py                         # -> benches/.build/pontoneer_ref*.so
    python benches/build_ref.py --name pontoneer_demo /tmp/refdemo
                                                        # the same C as `pontoneer_demo`, e.g. for
                                                        # PONTONEER_DEMO_PATH=/tmp/refdemo pytest ...

The extension is compiled by setuptools (the interpreter's own compiler and CFLAGS, which for a
release CPython include -O3 -DNDEBUG -fwrapv) plus -Wall -Wextra -Werror, with
-DREF_MODULE_NAME=<name> choosing the module name. The result is copied into the output
directory atomically. It is rebuilt only when it is missing or older than ref_demo.c or this
file (or with --force). Nothing here is ever installed or shipped.

`--data-alloc malloc` (-DREF_DATA_SYSTEM_MALLOC) takes the items' blocks from the C library's
malloc instead of PyMem_*, the allocator a Rust Vec uses: the "allocator-matched" reference
(bench.py and callgrind.py `--ref-data-alloc malloc` build it into benches/.build/malloc/).

bench.py imports `build` from this file and builds into benches/.build/, which it keeps out of
git with a `.gitignore` of its own.
"""

import argparse
import contextlib
import io
import os
import shutil
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "ref_c", "ref_demo.c")
DEFAULT_OUT = os.path.join(HERE, ".build")
DEFAULT_NAME = "pontoneer_ref"

WARNING_FLAGS = ["-Wall", "-Wextra", "-Werror"]


def ext_path(out_dir, name=DEFAULT_NAME):
    """Where the built module for this interpreter lives."""
    return os.path.join(out_dir, name + sysconfig.get_config_var("EXT_SUFFIX"))


def is_stale(target):
    if not os.path.exists(target):
        return True
    built = os.path.getmtime(target)
    return any(os.path.getmtime(dep) > built for dep in (SOURCE, os.path.abspath(__file__)))


DATA_ALLOCATORS = ("pymem", "malloc")


def build(out_dir=DEFAULT_OUT, name=DEFAULT_NAME, force=False, verbose=False, data_alloc="pymem"):
    """Build the reference as module `name` into `out_dir` (if stale); return the .so path.
    `data_alloc`: "pymem" (PyMem_*, the default) or "malloc" (the C library's, as Rust's)."""
    if data_alloc not in DATA_ALLOCATORS:
        raise ValueError(f"data_alloc must be one of {DATA_ALLOCATORS}, not {data_alloc!r}")
    if not name.isidentifier():
        raise ValueError(f"not a module name: {name!r}")
    out_dir = os.path.abspath(out_dir)
    target = ext_path(out_dir, name)
    if not force and not is_stale(target):
        return target
    os.makedirs(out_dir, exist_ok=True)

    # setuptools is imported lazily: a fresh reference costs nothing when it is up to date.
    from setuptools import Distribution, Extension

    ext = Extension(
        name,
        sources=[SOURCE],
        define_macros=[("REF_MODULE_NAME", name)]
        + ([("REF_DATA_SYSTEM_MALLOC", "1")] if data_alloc == "malloc" else []),
        extra_compile_args=[] if os.name == "nt" else WARNING_FLAGS,
    )
    with tempfile.TemporaryDirectory(prefix="pontoneer-ref-") as tmp:
        dist = Distribution({"name": name, "ext_modules": [ext], "script_name": "build_ref.py"})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = os.path.join(tmp, "lib")
        cmd.build_temp = os.path.join(tmp, "temp")
        cmd.inplace = False
        cmd.force = True
        cmd.ensure_finalized()
        log = io.StringIO()
        if verbose:
            with contextlib.suppress(ImportError):
                from distutils import log as distutils_log  # shows the compiler commands

                distutils_log.set_verbosity(2)
        try:
            if verbose:
                cmd.run()
            else:
                # setuptools/distutils announce every command on stdout; keep it for errors.
                with contextlib.redirect_stdout(log):
                    cmd.run()
        except Exception as exc:
            sys.stderr.write(log.getvalue())
            raise RuntimeError(f"building the C reference {SOURCE} failed: {exc}") from exc
        built = cmd.get_ext_fullpath(name)
        staged = target + ".tmp"
        shutil.copyfile(built, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, target)  # atomic: an importer never sees a half-written file
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default=DEFAULT_OUT,
                        help="output directory (default: benches/.build)")
    parser.add_argument("--name", default=DEFAULT_NAME,
                        help="module name (default: pontoneer_ref; pontoneer_demo to run the "
                             "contract tests against the C reference)")
    parser.add_argument("--data-alloc", choices=DATA_ALLOCATORS, default="pymem",
                        help="allocator of the items: PyMem_* (default) or the C library's "
                             "malloc (what a Rust Vec uses)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the compiler commands")
    args = parser.parse_args(argv)
    print(build(args.out_dir, args.name, force=args.force, verbose=args.verbose,
                data_alloc=args.data_alloc))


if __name__ == "__main__":
    main()
