#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then runs formatting and
# lint checks, `cargo test` (unit, doc, integration tests with an embedded interpreter, and
# the C buffer harness), builds the extension modules and runs pytest over the Python
# contract. CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
export PYO3_PYTHON="$(command -v "$PY")"
echo "== Python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

echo "== Installing Python test dependencies"
"$PY" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt

echo "== Formatting and lints"
cargo fmt --all -- --check
cargo clippy --quiet --workspace --all-targets -- -D warnings

echo "== cargo test (unit, doc, integration, C harness)"
# Doctests do not get the build script's rpath: point the loader at the configured
# interpreter's libpython so they embed the same Python as the other tests.
LIBDIR="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --quiet

echo "== Building the extension modules (setup.py build_ext --inplace)"
"$PY" setup.py --quiet build_ext --inplace

echo "== pytest"
# The fault-injection suites panic on purpose thousands of times; capturing a backtrace for
# each (RUST_BACKTRACE=1) would only slow them down.
RUST_BACKTRACE=0 "$PY" -X dev -m pytest -q -p no:cacheprovider tests/python
