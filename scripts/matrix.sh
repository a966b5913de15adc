#!/usr/bin/env bash
# Version matrix: builds the extension modules and runs the pytest suite on every CPython
# 3.9-3.13 found under $(pyenv root)/versions, then builds the stable-ABI (abi3-py311) modules
# once and runs the suite with those same .so files on 3.11, 3.12 and 3.13. Every build is
# warning-free (RUSTFLAGS=-Dwarnings). A missing interpreter is reported as MISSING and makes
# the script fail: nothing is skipped silently.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYENV_ROOT=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
declare -a RESULTS
status=0

find_python() {  # newest installed patch release of minor version $1, or nothing
    ls -d "$PYENV_ROOT"/versions/"$1".* 2>/dev/null | grep -E "/$1\.[0-9]+$" | sort -V | tail -n 1
}

run_suite() {  # $1 label, $2 python, $3 tree
    local label=$1 py=$2 tree=$3 log
    log=$(mktemp)
    if (cd "$tree" && "$py" -X dev -m pytest -q -p no:cacheprovider tests/python) >"$log" 2>&1; then
        RESULTS+=("$label: PASS ($(tail -n 1 "$log"))")
    else
        RESULTS+=("$label: FAIL ($(tail -n 1 "$log"))")
        tail -n 40 "$log"
        status=1
    fi
    rm -f "$log"
}

build() {  # $1 python, $2 tree, $3 target dir; extra env passed by the caller
    (cd "$2" && RUSTFLAGS="-D warnings" PYO3_PYTHON="$1" CARGO_TARGET_DIR="$3" \
        "$1" setup.py --quiet build_ext --inplace) >/dev/null 2>"$3.log" || {
        cat "$3.log"
        return 1
    }
}

for minor in 3.9 3.10 3.11 3.12 3.13; do
    prefix=$(find_python "$minor")
    if [ -z "$prefix" ]; then
        RESULTS+=("CPython $minor: MISSING (no $PYENV_ROOT/versions/$minor.*)")
        status=1
        continue
    fi
    py="$prefix/bin/python"
    echo "== CPython $("$py" -c 'import platform; print(platform.python_version())')"
    "$py" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt || {
        RESULTS+=("CPython $minor: FAIL (pip install)"); status=1; continue; }
    if ! build "$py" "$ROOT" "$ROOT/target/matrix-$minor"; then
        RESULTS+=("CPython $minor: FAIL (build with -D warnings)"); status=1; continue
    fi
    run_suite "CPython $minor" "$py" "$ROOT"
done

# One abi3 build (3.11 stable ABI), tested on 3.11, 3.12 and 3.13 from a separate tree so that
# no version-specific .so can shadow it.
echo "== abi3-py311"
abi3_tree=$(mktemp -d)
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$abi3_tree"
py311=$(find_python 3.11)
if [ -z "$py311" ]; then
    RESULTS+=("abi3 build: MISSING (needs CPython 3.11)"); status=1
elif PONTONEER_ABI3=1 build "$py311/bin/python" "$abi3_tree" "$ROOT/target/matrix-abi3"; then
    ls "$abi3_tree"/*.abi3.so >/dev/null || { RESULTS+=("abi3 build: FAIL (no .abi3.so)"); status=1; }
    for minor in 3.11 3.12 3.13; do
        prefix=$(find_python "$minor")
        if [ -z "$prefix" ]; then
            RESULTS+=("abi3 on CPython $minor: MISSING"); status=1; continue
        fi
        "$prefix/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
        run_suite "abi3 .so on CPython $minor" "$prefix/bin/python" "$abi3_tree"
    done
else
    RESULTS+=("abi3 build: FAIL (build with -D warnings)"); status=1
fi
rm -rf "$abi3_tree"

echo
echo "== Version matrix"
printf '%s\n' "${RESULTS[@]}"
exit $status
