#!/usr/bin/env bash
# Writes docs/example-logs.md from a real run, so the examples stay true: the service (release
# build, LOG_LEVEL=DEBUG) against the local Redis, two RTSP cameras from the project's server
# (the pedestrian sample; a zoom into the plate photo with ANPR on), and the RTSP server killed
# and restarted mid-run to show a reconnect. Needs scripts/setup.sh to have run.
#
#   scripts/example_logs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/analytics-service/target}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.local/onnxruntime/lib/libonnxruntime.so}"
MEDIA="${ANALYTICS_PREFIX:-$ROOT/.local}/media"   # scripts/setup.sh fills it
WORK="$ROOT/.local/example-logs"; mkdir -p "$WORK"
API_PORT="${API_PORT:-18169}"; RTSP_PORT="${RTSP_PORT:-18654}"
cargo build --release --locked --bin analytics-service >&2
[ -f "$WORK/plate.mp4" ] || ffmpeg -loglevel error -y -loop 1 -framerate 10 -i "$MEDIA/car_plate_cz_5AU5341.png" \
  -vf "scale=1036:662,zoompan=z='1+0.003*on':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s=1036x662:fps=10" \
  -t 8 -c:v libx264 -pix_fmt yuv420p "$WORK/plate.mp4"
rtsp() { /usr/bin/python3 scripts/rtsp_server.py --port "$RTSP_PORT" --mount walk="$MEDIA/vtest_pedestrians_768x576.mp4" --mount gate="$WORK/plate.mp4" >/dev/null 2>&1 & echo $!; }
RTSP_PID=$(rtsp)
LOG_LEVEL=DEBUG API_HOST=127.0.0.1 API_PORT="$API_PORT" REDIS_HOST=127.0.0.1 REDIS_STREAM=example:logs \
  "$CARGO_TARGET_DIR/release/analytics-service" 2>"$WORK/service.log" &
SVC_PID=$!
trap 'kill $SVC_PID $RTSP_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$API_PORT/api/health" >/dev/null && break; sleep 0.1; done
curl -sf -X POST "http://127.0.0.1:$API_PORT/api/cameras" -H 'Content-Type: application/json' -d "[
 {\"camera_id\": \"lobby\", \"stream_url\": \"rtsp://viewer:s3cret@127.0.0.1:$RTSP_PORT/walk\", \"parameters\": {\"motion_threshold\": 0.02, \"max_fps\": 2}},
 {\"camera_id\": \"gate\", \"stream_url\": \"rtsp://127.0.0.1:$RTSP_PORT/gate\", \"parameters\": {\"enable_anpr\": true, \"enable_motion_detection\": false, \"max_fps\": 5}}]" >/dev/null
sleep 10
kill "$RTSP_PID"; wait "$RTSP_PID" 2>/dev/null || true
sleep 4
RTSP_PID=$(rtsp)
sleep 8
kill -TERM "$SVC_PID"; wait "$SVC_PID" || true
kill "$RTSP_PID" 2>/dev/null || true
redis-cli DEL example:logs >/dev/null

# a pattern that matches nothing leaves its section short instead of stopping the script
pick() { grep -E "$1" "$WORK/service.log" | head -n "$2" || true; }
{
  echo "# Example logs"
  echo
  echo "Real lines from one run, written by \`scripts/example_logs.sh\` (rerun it to refresh them):"
  echo "the service at \`LOG_LEVEL=DEBUG\`, camera \`lobby\` on the pedestrian sample over RTSP"
  echo "(with credentials in its URL, masked in every line), camera \`gate\` with ANPR on a zoom into"
  echo "the plate photo, and the RTSP server killed for 4 s mid-run. Lines are"
  echo "\`<RFC 3339 time> [LEVEL] <place>: <sentence>: <error>\`."
  echo
  echo "## Start-up"
  echo '```'; pick 'starting|ONNX Runtime|detect: .* ready|inference worker|publish: writing|api: listening|registered' 12; echo '```'
  echo
  echo "## Motion events and publishing"
  echo '```'; pick 'motion cam=lobby' 4; pick 'publish: [0-9]+ event' 3; echo '```'
  echo
  echo "## ANPR"
  echo '```'; pick 'anpr cam=' 3; echo '```'
  echo
  echo "## A reconnect (RTSP server down for 4 s)"
  echo '```'; pick 'capture cam=.*(failed|opened)' 8; echo '```'
  echo
  echo "## Shutdown (SIGTERM)"
  echo '```'; pick 'signal|shutdown|publish: stopped' 8; echo '```'
} > docs/example-logs.md
echo "wrote docs/example-logs.md" >&2
