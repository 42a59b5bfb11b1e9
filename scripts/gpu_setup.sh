#!/usr/bin/env bash
# Installs the GPU recipe of docs/gpu.md into a prefix: ONNX Runtime's CUDA build (PyPI
# `onnxruntime-gpu`) and the NVIDIA runtime libraries it loads (PyPI `nvidia-*` and
# `tensorrt-cu13-libs` wheels). No GPU, driver or CUDA toolkit is needed to install it; running
# on a GPU additionally needs the NVIDIA driver (libcuda.so.1), which no wheel ships.
#
#   scripts/gpu_setup.sh [PREFIX]      # default .local/gpu: CUDA recipe, from PyPI only
#   GPU_TENSORRT=1 scripts/gpu_setup.sh [PREFIX]   # + TensorRT 10 (from NVIDIA's index, see below)
#   . PREFIX/env.sh                    # exports ORT_DYLIB_PATH and LD_LIBRARY_PATH
#
# Result:
#   PREFIX/site/      the wheels, unpacked (pip --target)
#   PREFIX/lib/       one folder of (relative) symlinks: libonnxruntime.so, its provider libraries and
#                     every libcu*/libnv*/libcudnn* of the wheels, so that ONE directory on
#                     LD_LIBRARY_PATH resolves everything the CUDA and TensorRT providers need
#   PREFIX/env.sh     ORT_DYLIB_PATH=PREFIX/lib/libonnxruntime.so, LD_LIBRARY_PATH=PREFIX/lib:...
#   PREFIX/.recipe    the pinned package list; the same list already installed = nothing to do
#
# Idempotent: a second run with the same recipe only re-checks the files (seconds).
# Environment: PYTHON (python3) runs pip; the wheels are for Linux x86_64 (or aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[gpu-setup] %s\n' "$*" >&2; }

PREFIX="${1:-.local/gpu}"
mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"
PYTHON="${PYTHON:-python3}"

# The recipe. onnxruntime-gpu 1.31.1 (the same version as the CPU library of scripts/setup.sh)
# is built for CUDA 13 + cuDNN 9: its wheel's `cuda` / `cudnn` extras ask for nvidia-cuda-runtime,
# nvidia-cuda-nvrtc ~=13.0, nvidia-cufft ~=12.0, nvidia-curand ~=10.0, nvidia-cudnn-cu13 ~=9.0.
# Its provider libraries also need cuBLAS 13 (CUDA) and TensorRT 10 (TensorRT), which those
# extras leave out. Exact pins, the newest of each major line when this was written: the same
# bytes on every machine; NVIDIA's minor-version compatibility runs any CUDA 13.x library on any
# CUDA 13 driver (r580 or newer).
ORT_VERSION="${ORT_VERSION:-1.31.1}"
RECIPE=(
  "onnxruntime-gpu==$ORT_VERSION"    # libonnxruntime.so + libonnxruntime_providers_{cuda,tensorrt,shared}.so
  nvidia-cuda-runtime==13.5.37       # libcudart.so.13
  nvidia-cublas==13.10.0.20          # libcublas.so.13, libcublasLt.so.13
  nvidia-curand==10.4.5.25           # libcurand.so.10
  nvidia-cufft==12.5.0.14            # libcufft.so.12 (in the wheel's `cuda` extra)
  nvidia-cuda-nvrtc==13.5.37         # libnvrtc.so.13 (in the wheel's `cuda` extra)
  nvidia-nvjitlink==13.5.37          # libnvJitLink.so.13 (cuFFT and cuBLAS load it)
  nvidia-cudnn-cu13==9.28.1.4        # libcudnn*.so.9
)
# TensorRT (INFERENCE_DEVICE=tensorrt), opt-in with GPU_TENSORRT=1: PyPI has tensorrt-cu13-libs
# only as a source stub whose build downloads the real wheel from NVIDIA's own index
# (pypi.nvidia.com), so it needs that host reachable; ~2.5 GB more.
TENSORRT=tensorrt-cu13-libs==10.16.1.11   # libnvinfer.so.10, libnvonnxparser.so.10
[ "${GPU_TENSORRT:-0}" = 1 ] && RECIPE+=("$TENSORRT")
# --no-deps: the list above is the whole closure the providers load; onnxruntime-gpu's own
# Python dependencies (numpy, protobuf, ...) and the wheels' cross-dependencies would only pull
# other versions of the same libraries.
want="$(printf '%s\n' "${RECIPE[@]%%#*}" | sed 's/ *$//')"

if [ -f "$PREFIX/.recipe" ] && [ "$(cat "$PREFIX/.recipe")" = "$want" ] && [ -f "$PREFIX/site/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" ]; then
  log "already installed in $PREFIX (same recipe): nothing to download"
else
  log "installing into $PREFIX/site: $(echo $want)"
  rm -rf "$PREFIX/site" "$PREFIX/lib" "$PREFIX/.recipe"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore --no-cache-dir -q --no-deps --only-binary=:all: \
    --target "$PREFIX/site" $(printf '%s\n' $want | grep -v '^tensorrt')
  if [ "${GPU_TENSORRT:-0}" = 1 ]; then
    # The stub's build backend (wheel-stub) fetches the wheel from NVIDIA's index.
    "$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore --no-cache-dir -q --no-deps \
      --target "$PREFIX/site" "$TENSORRT"
  fi
  log "pip took $(( $(date +%s) - start )) s; $(du -sh "$PREFIX/site" | cut -f1) installed"
fi

# One folder of symlinks (rebuilt each run: cheap, and repairs a half-removed prefix).
capi="$PREFIX/site/onnxruntime/capi"
[ -f "$capi/libonnxruntime.so.$ORT_VERSION" ] || { log "missing $capi/libonnxruntime.so.$ORT_VERSION: remove $PREFIX and rerun"; exit 1; }
rm -rf "$PREFIX/lib.new" && mkdir -p "$PREFIX/lib.new"
# ONNX Runtime loads its provider libraries from the folder of libonnxruntime.so as it was
# opened (ORT_DYLIB_PATH), so they sit side by side.
# Relative links: the prefix can be moved as a whole (the Docker image builds it in /out/gpu).
for f in "$capi"/libonnxruntime.so.* "$capi"/libonnxruntime_providers_*.so; do
  ln -sr "$f" "$PREFIX/lib.new/"
done
ln -s "libonnxruntime.so.$ORT_VERSION" "$PREFIX/lib.new/libonnxruntime.so"
n=0
for dir in "$PREFIX"/site/nvidia/*/lib "$PREFIX"/site/tensorrt_libs; do
  [ -d "$dir" ] || continue
  for f in "$dir"/lib*.so*; do
    [ -e "$f" ] || continue
    [ -e "$PREFIX/lib.new/$(basename "$f")" ] || { ln -sr "$f" "$PREFIX/lib.new/"; n=$((n + 1)); }
  done
done
rm -rf "$PREFIX/lib" && mv "$PREFIX/lib.new" "$PREFIX/lib"
cat >"$PREFIX/env.sh" <<EOF
# Written by scripts/gpu_setup.sh: source it before starting analytics-service on the GPU recipe.
export ORT_DYLIB_PATH="$PREFIX/lib/libonnxruntime.so"
export LD_LIBRARY_PATH="$PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
EOF
printf '%s\n' "$want" >"$PREFIX/.recipe"
log "ready: $PREFIX/lib ($n NVIDIA libraries linked); . $PREFIX/env.sh"
