#!/usr/bin/env bash
# Fetches the native ML runtimes from PyPI wheels and unpacks the few files ferroflow needs:
#   deps/onnxruntime/libonnxruntime.so.1.31.1   (from onnxruntime==1.31.1)
#   deps/libtorch/{include,lib}                  (from torch==2.13.0 plus the two CUDA
#                                                 runtime wheels libtorch_cpu.so links to)
# Idempotent: a stamp file per runtime records what was unpacked; wheels are cached in
# $FERROFLOW_CACHE/wheels (default ~/.cache/ferroflow/wheels) so a fresh clone unpacks
# without downloading again. Only PyPI is contacted (through pip).
#
# Usage: setup-runtimes.sh [onnx|torch|all]   (default all)
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
cache="${FERROFLOW_CACHE:-$HOME/.cache/ferroflow}"
wheels="$cache/wheels"
mkdir -p "$wheels" deps

ORT_VERSION=1.31.1
TORCH_VERSION=2.13.0
CUDA_RUNTIME_VERSION=13.0.96
CUDA_CUPTI_VERSION=13.0.85

pip_download() {
  # pip_download <glob that proves it is cached> <pip args...>
  local glob="$1"
  shift
  if ! compgen -G "$wheels/$glob" >/dev/null; then
    python3 -m pip download -q --disable-pip-version-check --no-deps -d "$wheels" "$@" >&2
  fi
  compgen -G "$wheels/$glob" | head -n1
}

setup_onnx() {
  local stamp=deps/onnxruntime/.stamp-$ORT_VERSION
  [[ -f $stamp ]] && return 0
  local whl
  whl=$(pip_download "onnxruntime-$ORT_VERSION-cp311-*manylinux*x86_64.whl" \
    --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 \
    "onnxruntime==$ORT_VERSION")
  rm -rf deps/onnxruntime && mkdir -p deps/onnxruntime
  python3 - "$whl" deps/onnxruntime "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" <<'PY'
import sys, zipfile, os
whl, dest, member = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, open(os.path.join(dest, os.path.basename(member)), "wb") as out:
    out.write(z.read(member))
PY
  touch "$stamp"
  echo "onnxruntime $ORT_VERSION -> deps/onnxruntime" >&2
}

setup_torch() {
  local stamp=deps/libtorch/.stamp-$TORCH_VERSION
  [[ -f $stamp ]] && return 0
  local torch_whl rt_whl cupti_whl
  torch_whl=$(pip_download "torch-$TORCH_VERSION-cp311-*manylinux*x86_64.whl" \
    --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 \
    "torch==$TORCH_VERSION")
  rt_whl=$(pip_download "nvidia_cuda_runtime-$CUDA_RUNTIME_VERSION-*.whl" \
    "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION")
  cupti_whl=$(pip_download "nvidia_cuda_cupti-$CUDA_CUPTI_VERSION-*.whl" \
    "nvidia-cuda-cupti==$CUDA_CUPTI_VERSION")
  rm -rf deps/libtorch && mkdir -p deps/libtorch/include deps/libtorch/lib
  # Headers and the CPU libraries only: libtorch_cuda and the other CUDA libraries are not
  # needed on a CPU machine; libtorch_cpu.so links to libcudart and libcupti, hence the two
  # small wheels.
  python3 - "$torch_whl" "$rt_whl" "$cupti_whl" deps/libtorch <<'PY'
import os, shutil, sys, zipfile
torch_whl, rt_whl, cupti_whl, dest = sys.argv[1:5]
libs = {"libtorch_cpu.so", "libc10.so", "libtorch.so", "libgomp.so.1"}
def extract(whl, want):
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            target = want(info.filename)
            if target is None or info.is_dir():
                continue
            path = os.path.join(dest, target)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with z.open(info) as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
def from_torch(name):
    if name.startswith("torch/include/"):
        return "include/" + name[len("torch/include/"):]
    base = os.path.basename(name)
    if name.startswith("torch/lib/") and base in libs:
        return "lib/" + base
    if name.startswith("torch.libs/") and base.startswith("libgomp"):
        return "lib/libgomp.so.1"
    return None
def cuda(prefix):
    def pick(name):
        base = os.path.basename(name)
        if "/lib/" in name and base.startswith(prefix) and ".so." in base:
            return "lib/" + base
        return None
    return pick
extract(torch_whl, from_torch)
extract(rt_whl, cuda("libcudart.so"))
extract(cupti_whl, cuda("libcupti.so"))
PY
  echo "$TORCH_VERSION" >deps/libtorch/build-version
  touch "$stamp"
  echo "libtorch $TORCH_VERSION -> deps/libtorch" >&2
}

case "$what" in
  onnx) setup_onnx ;;
  torch) setup_torch ;;
  all) setup_onnx; setup_torch ;;
  *) echo "usage: $0 [onnx|torch|all]" >&2; exit 2 ;;
esac
