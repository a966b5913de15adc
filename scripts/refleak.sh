#!/usr/bin/env bash
# Reference-leak run (CPython's `-R 3:3` idea) on Debian's debug interpreter python3.11-dbg:
# installs what it needs, builds pontoneer_demo and pontoneer_testmod against the debug ABI
# (Py_REF_DEBUG on in the Rust build too), then runs tests/leaks/refleak.py: every named
# statement 1 warm-up + 3 measured rounds of 10,000 calls, gated on
# sys.gettotalrefcount() and sys.getallocatedblocks() deltas == 0. See tests/leaks/README.md.
#
#   bash scripts/refleak.sh                 # everything
#   bash scripts/refleak.sh -k 'Vec2/nb_add' # one group (extra arguments go to refleak.py)
#
# Environment: REFLEAK_NUMPY=0 skips building numpy for the debug interpreter (the numpy
# statements are then skipped); REFLEAK_TARGET (default target/dbg) holds the cargo target
# dir, the venv, the built modules (lib/) and the numpy wheel (wheels/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
TARGET=${REFLEAK_TARGET:-$ROOT/target/dbg}
VENV=$TARGET/venv
LIB=$TARGET/lib
WHEELS=$TARGET/wheels

echo "== Debian packages: python3.11-dbg python3.11-dev python3.11-venv"
missing=()
for pkg in python3.11-dbg python3.11-dev python3.11-venv; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
DBG_PY=$(command -v python3.11-dbg)
"$DBG_PY" -c 'import sys; assert hasattr(sys, "gettotalrefcount"), "not a debug build"'

echo "== venv for the debug interpreter: $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    "$DBG_PY" -m venv "$VENV"
fi
PY=$VENV/bin/python
"$PY" -c 'import setuptools_rust' 2>/dev/null \
    || "$PY" -m pip install --quiet --disable-pip-version-check "setuptools-rust>=1.9"

# numpy: every binary on PyPI (and Debian's python3-numpy) is a release build, which the
# debug interpreter imports but whose increfs/decrefs sys.gettotalrefcount does not see.
# Build it once from source against the debug headers and keep the wheel in $WHEELS
# (about 20 CPU-minutes). The driver checks numpy's refcounting itself and skips the numpy
# statements when it does not add up.
numpy_is_debug_build() {
    "$PY" - <<'EOF' 2>/dev/null
import importlib.machinery, importlib.util, sys
spec = (importlib.util.find_spec("numpy._core._multiarray_umath")
        or importlib.util.find_spec("numpy.core._multiarray_umath"))
sys.exit(0 if spec and spec.origin.endswith(importlib.machinery.EXTENSION_SUFFIXES[0]) else 1)
EOF
}
if [ "${REFLEAK_NUMPY:-1}" = 1 ] && ! numpy_is_debug_build; then
    echo "== numpy for the debug ABI"
    mkdir -p "$WHEELS"
    if ! ls "$WHEELS"/numpy-*-cp311-cp311d-*.whl >/dev/null 2>&1; then
        echo "   building numpy from source (once; the wheel is kept in $WHEELS)"
        "$PY" -m pip wheel --quiet --disable-pip-version-check --no-binary numpy \
            --wheel-dir "$WHEELS" numpy \
            || echo "   numpy build failed: the numpy statements will be skipped"
    fi
    if ls "$WHEELS"/numpy-*-cp311-cp311d-*.whl >/dev/null 2>&1; then
        "$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
            "$(ls "$WHEELS"/numpy-*-cp311-cp311d-*.whl | sort -V | tail -n 1)"
    fi
fi

echo "== Building the extension modules for the debug ABI into $LIB"
# A separate target dir: the debug-ABI build (py_sys_config=Py_DEBUG/Py_REF_DEBUG) must not
# invalidate or replace the regular builds. The .so files get the debug suffix
# (cpython-311d-x86_64-linux-gnu.so), and the driver refuses any other.
PYO3_PYTHON="$PY" CARGO_TARGET_DIR="$TARGET" \
    "$PY" setup.py --quiet build_ext --build-lib "$LIB" >"$TARGET/build.log" 2>&1 || {
    tail -n 60 "$TARGET/build.log"
    exit 1
}
ls "$LIB"/*.so

echo "== refleak.py"
status=0
RUST_BACKTRACE=0 "$PY" -u tests/leaks/refleak.py --lib "$LIB" "$@" || status=$?
echo "== scripts/refleak.sh: exit $status, wall time $(( $(date +%s) - START )) s"
exit $status
