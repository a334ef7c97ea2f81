#!/usr/bin/env bash
# Python venvs with the peers the comparison benchmarks run. Only benchmarks and regenerating
# the test models need them; the test suite does not. Idempotent; prints the venv's python.
# Cached under $FERROFLOW_CACHE (default ~/.cache/ferroflow).
#   bash scripts/setup-python.sh          onnxruntime, torch, and the exporters
#                                         scripts/make-test-models.py uses (scikit-learn, skl2onnx)
#   bash scripts/setup-python.sh online   River (online learning; its wheel bundles the Phishing
#                                         and Shuttle datasets), scikit-learn and pyarrow (to
#                                         write the inputs as Parquet too), without torch
set -euo pipefail
cache="${FERROFLOW_CACHE:-$HOME/.cache/ferroflow}"
case "${1:-default}" in
  default)
    venv="$cache/pyenv"
    stamp="$venv/.ferroflow-stamp-1"
    pkgs=(torch==2.13.0 onnxruntime==1.31.1 onnx==1.23.2 onnxscript==0.7.2
      scikit-learn==1.9.1 skl2onnx==1.20.0 pandas numpy)
    ;;
  online)
    # River 0.26.0 does not import on Python 3.11 (it subscripts csv.DictReader); 0.26.1 does.
    venv="$cache/pyenv-online"
    stamp="$venv/.ferroflow-stamp-2"
    pkgs=(river==0.26.1 scikit-learn==1.9.1 numpy pyarrow==26.0.1)
    ;;
  *)
    echo "usage: setup-python.sh [online]" >&2
    exit 2
    ;;
esac
if [[ ! -f $stamp ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
