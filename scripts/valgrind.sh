#!/usr/bin/env bash
# valgrind memcheck over (a) the pytest suite and (b) the `cargo test` integration binaries
# `embedded` and `capi_buffer`, with the python3 on PATH (pyenv's 3.11.7 here). Every run uses
#   --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
# and two suppression files: tests/leaks/python.supp (CPython's, numpy's and glibc's own noise,
# generated from pure-Python runs: `--regen-supp`) and tests/leaks/pontoneer-by-design.supp
# (the tables pontoneer leaks on purpose once per module instance, and the conformance kit's
# deliberately leaking BadExporter; VALGRIND_BY_DESIGN=0 turns it off). See
# tests/leaks/README.md.
#
#   bash scripts/valgrind.sh                # whole pytest suite + cargo binaries (~14 min)
#   bash scripts/valgrind.sh --subset       # a representative pytest subset
#   bash scripts/valgrind.sh --skip-five-million  # without capi_buffer's 5,000,000-cycle test (2.5 min)
#   bash scripts/valgrind.sh --regen-supp   # regenerate tests/leaks/python.supp first
#   bash scripts/valgrind.sh --pytest-only | --cargo-only
#
# Environment: PYTHON (interpreter, default python3), VALGRIND_PYTHONMALLOC (default
# malloc_debug, see below), VALGRIND_BY_DESIGN (1), VALGRIND_TARGET (target/valgrind: build
# dirs, logs/).
#
# PYTHONMALLOC: `malloc_debug` = the plain malloc allocator *plus* CPython's debug hooks,
# which fill every new block with 0xCD. CPython 3.11 reads the uninitialised first digit of
# a freshly allocated zero int (python/cpython#119022, fixed in 3.12 only: `0 * digit`), and
# with bare PYTHONMALLOC=malloc memcheck then reports every later use of that small-int
# pointer anywhere in the process, an extension's frames too (1,502 errors from 40 contexts
# for test_buffer.py alone).
# The hooks define those bytes; Rust's own allocations still go straight to malloc and keep
# full memcheck coverage. VALGRIND_PYTHONMALLOC=malloc runs with bare malloc instead (its
# suppressions live in tests/leaks/python.malloc.supp, generated with --regen-supp).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
OUT=${VALGRIND_TARGET:-$ROOT/target/valgrind}
LOGS=$OUT/logs
PYMALLOC=${VALGRIND_PYTHONMALLOC:-malloc_debug}
if [ "$PYMALLOC" = malloc_debug ]; then
    SUPP=tests/leaks/python.supp
else
    SUPP=tests/leaks/python.$PYMALLOC.supp
fi

REGEN=0 FULL=1 DO_PYTEST=1 DO_CARGO=1 SKIP_5M=0
for arg in "$@"; do
    case $arg in
        --regen-supp) REGEN=1 ;;
        --full) FULL=1 ;;
        --subset) FULL=0 ;;
        --skip-five-million) SKIP_5M=1 ;;
        --pytest-only) DO_CARGO=0 ;;
        --cargo-only) DO_PYTEST=0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# The pytest subset for --subset (the whole suite, the default, takes ~9-10 minutes under
# valgrind on an idle 2-core machine; this subset about half of that). Left out:
# tests that only start other processes (not traced: --trace-children=no), the embedding
# example (cargo run), the RSS/load, hypothesis-model and thread-stress tests of
# test_reliability.py (valgrind's own memory use and serialised threads make them
# meaningless or very slow) and the refcount loops over 1000 rounds (scripts/refleak.sh
# measures refcounts on a debug build). Everything else of every file runs.
PYTEST_SUBSET=(
    tests/python/test_buffer.py
    tests/python/test_exporters.py
    tests/python/test_foundation.py
    tests/python/test_protocols.py
    tests/python/test_faults.py
    tests/python/test_slots.py
    tests/python/test_conformance.py
    tests/python/test_reliability.py
    -k "not subprocess and not refcounts_unchanged and not load_ and not Model and not threads and not cli"
)

PY=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')  # not pyenv's shim script
LIBDIR=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
# where CPython's code lives, as a valgrind obj: pattern (libpython3.x.so*, or the executable
# of a static build)
CPYTHON_OBJ=$("$PY" -c 'import sys, sysconfig
v = sysconfig.get_config_var
print("*/libpython%s.so*" % v("LDVERSION") if v("Py_ENABLE_SHARED") else sys.executable)')
echo "== Python: $PY ($("$PY" -c 'import platform; print(platform.python_version())')), libpython in $LIBDIR"
echo "== PYTHONMALLOC=$PYMALLOC, suppressions: $SUPP"

if ! command -v valgrind >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
fi
echo "== $(valgrind --version)"
"$PY" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt

mkdir -p "$OUT" "$LOGS"
rm -f "$LOGS"/*.log

echo "== Building the extension modules into $OUT/lib (release + debug info)"
PYO3_PYTHON="$PY" CARGO_TARGET_DIR="$OUT/ext" CARGO_PROFILE_RELEASE_DEBUG=true \
    "$PY" setup.py --quiet build_ext --build-lib "$OUT/lib" >"$OUT/build-ext.log" 2>&1 || {
    tail -n 40 "$OUT/build-ext.log"; exit 1; }

declare -A TEST_BIN
if [ $DO_CARGO = 1 ]; then
    echo "== cargo test --no-run (embedded, capi_buffer) in $OUT/cargo"
    PYO3_PYTHON="$PY" CARGO_TARGET_DIR="$OUT/cargo" \
        cargo test --no-run --message-format=json --test embedded --test capi_buffer \
        >"$OUT/cargo-build.json" 2>"$OUT/cargo-build.log" || {
        tail -n 40 "$OUT/cargo-build.log"; exit 1; }
    while read -r name exe; do
        TEST_BIN[$name]=$exe
    done < <("$PY" - "$OUT/cargo-build.json" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
EOF
)
    for name in "${!TEST_BIN[@]}"; do echo "   $name: ${TEST_BIN[$name]}"; done
fi

export RUST_BACKTRACE=0  # a symbolised backtrace per deliberate panic would take hours
export PYTHONMALLOC=$PYMALLOC
VG_BASE=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite
         --errors-for-leak-kinds=definite --num-callers=40 --child-silent-after-fork=yes)

if [ $REGEN = 1 ] || [ ! -f "$SUPP" ]; then
    echo "== Generating $SUPP from pure-Python runs (no pontoneer module imported)"
    t0=$(date +%s)
    "${VG_BASE[@]}" --gen-suppressions=all --log-file="$LOGS/supp-gen-script.log" \
        "$PY" tests/leaks/supp_workload.py >/dev/null
    "${VG_BASE[@]}" --gen-suppressions=all --log-file="$LOGS/supp-gen-pytest.log" \
        "$PY" -m pytest -q -p no:cacheprovider tests/leaks/supp_workload.py >/dev/null
    "$PY" tests/leaks/vgtool.py supp "$LOGS"/supp-gen-*.log -o "$SUPP" \
        --cpython-obj "$CPYTHON_OBJ"
    echo "   ($(( $(date +%s) - t0 )) s)"
fi

VG=("${VG_BASE[@]}" --error-exitcode=99 -v --suppressions="$SUPP")
if [ "${VALGRIND_BY_DESIGN:-1}" = 1 ]; then
    VG+=(--suppressions=tests/leaks/pontoneer-by-design.supp)
fi

declare -a RESULTS
status=0
run() {  # $1 label, $2 log name, rest: command
    local label=$1 log=$LOGS/$2.log rc t0=$(date +%s)
    shift 2
    echo "== $label"
    "${VG[@]}" --log-file="$log" "$@"
    rc=$?
    RESULTS+=("$label: exit $rc, $(( $(date +%s) - t0 )) s, $(grep -h 'ERROR SUMMARY' "$log" | tail -n 1 | sed 's/^==[0-9]*== //')")
    [ $rc = 0 ] || status=1
}

if [ $DO_PYTEST = 1 ]; then
    if [ $FULL = 1 ]; then
        PYTEST_ARGS=(tests/python)
    else
        PYTEST_ARGS=("${PYTEST_SUBSET[@]}")
    fi
    PONTONEER_DEMO_PATH="$OUT/lib" run "pytest ${PYTEST_ARGS[*]}" pytest \
        "$PY" -m pytest -q -p no:cacheprovider "${PYTEST_ARGS[@]}"
fi
if [ $DO_CARGO = 1 ]; then
    # The test binaries load libpython from LIBDIR (the pyenv interpreter's). The
    # 5,000,000-cycle get/release test takes ~2.5 minutes under valgrind and is included
    # unless --skip-five-million.
    skip=()
    [ $SKIP_5M = 1 ] && skip=(--skip five_million)
    LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        run "cargo test --test embedded" embedded "${TEST_BIN[embedded]}" --test-threads=1
    LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        run "cargo test --test capi_buffer ${skip[*]}" capi_buffer \
        "${TEST_BIN[capi_buffer]}" --test-threads=1 "${skip[@]}"
fi

echo
echo "== valgrind summary (logs in $LOGS)"
"$PY" tests/leaks/vgtool.py summary "$LOGS"/pytest.log "$LOGS"/embedded.log \
    "$LOGS"/capi_buffer.log
grep -h "used_suppression:.*pontoneer-by-design" "$LOGS"/*.log 2>/dev/null \
    | sed 's/^--[0-9]*-- /   by design: /'
for r in "${RESULTS[@]}"; do echo "   $r"; done
echo "== scripts/valgrind.sh: exit $status, wall time $(( $(date +%s) - START )) s"
exit $status
