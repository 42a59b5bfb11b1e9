#!/usr/bin/env bash
# Installs everything the service, its tests and its demo need on a fresh Debian 12 machine that
# reaches only the package registries (Debian, PyPI, crates.io), then makes sure a Redis answers.
# Idempotent: installed pieces are skipped, so a second run takes seconds.
#
#   scripts/setup.sh            # install + start redis if none answers
#
# Environment: REDIS_HOST / REDIS_PORT (127.0.0.1 / 6379) say which Redis must answer;
# ANALYTICS_PREFIX (.local in the repo) is where non-apt pieces go.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# --- apt packages ---------------------------------------------------------------------------
APT_PACKAGES=(
  redis-server          # the stream the service writes to; tests start their own on spare ports
  pkg-config curl ca-certificates
  libopencv-dev clang libclang-dev   # the opencv crate: OpenCV 4.6 + bindgen (first build ~1 min)
  ffmpeg                # test fixtures (static clip, plate video) and the demo's long file
  python3 python3-gi gir1.2-gst-rtsp-server-1.0 \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
                        # scripts/rtsp_server.py: the local RTSP server of tests and demo
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
