#!/usr/bin/env bash
# Builds the demo module pontoneer_demo from a fresh clone and runs the tour.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYO3_PYTHON="$(command -v "$PY")"
"$PY" -m pip install --quiet --disable-pip-version-check "setuptools>=61" "setuptools-rust>=1.9" numpy
"$PY" setup.py --quiet build_ext --inplace
"$PY" examples/tour.py
