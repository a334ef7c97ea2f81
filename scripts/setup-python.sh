#!/usr/bin/env bash
# A Python venv with the peers the comparison benchmarks run (onnxruntime, torch) and the
# exporters scripts/make-test-models.py uses (scikit-learn, skl2onnx). Only benchmarks and
# regenerating the test models need it; the test suite does not. Idempotent; prints the
# venv's python. Cached in $FERROFLOW_CACHE/pyenv (default ~/.cache/ferroflow/pyenv).
set -euo pipefail
cache="${FERROFLOW_CACHE:-$HOME/.cache/ferroflow}"
venv="$cache/pyenv"
stamp="$venv/.ferroflow-stamp-1"
if [[ ! -f $stamp ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    torch==2.13.0 onnxruntime==1.31.1 onnx==1.23.2 onnxscript==0.7.2 \
    scikit-learn==1.9.1 skl2onnx==1.20.0 pandas numpy >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
