#!/usr/bin/env bash
# Builds the Dockerfile (CPU flavour) the way `docker compose up --build` would, on a Debian 12
# machine without a Docker engine and without Docker Hub, then runs the image and checks it
# serves: /api/health answers (model loaded, dynamic batch), the image's HEALTHCHECK command
# passes inside it, and a file camera produces motion and detection events in a local Redis.
#
#   scripts/docker_check.sh          # ~10 min on 2 cores (base images ~3 min, once; build ~6 min)
#
# How, without Docker:
#   - buildah from Debian (apt-get install buildah debootstrap), `--storage-driver vfs`,
#     `--isolation chroot`, `--pull=never`: nothing is pulled from any container registry;
#   - `debian:bookworm-slim` is made with debootstrap (minbase, the same apt sources, docs and
#     man pages excluded and downloaded packages cleaned like the official slim image); it also
#     carries this machine's locally added CA certificates and /etc/pip.conf, because HTTPS from
#     these machines goes through a TLS-inspecting proxy (crates.io and PyPI fail without them);
#     Docker Hub's image on an ordinary network needs neither;
#   - `rust:1-bookworm` is a stand-in made from it: gcc, libc6-dev, pkg-config, curl, git and
#     this machine's Rust toolchain (`rustc --print sysroot`, without its docs) in /usr/local;
#   - buildah 1.28 does not resolve `FROM runtime-${FLAVOR}` from the global ARG's default, so
#     FLAVOR is passed with --build-arg (Docker resolves it by itself).
# The build context is a copy of the checkout's tracked and untracked-but-not-ignored files, so
# models/ is empty, as on a fresh clone: the image takes the models from PyPI and makes the
# yolov8n batch axis dynamic itself. The running check mounts the sample media (setup.sh's
# .local/media) read-only at /media and uses the machine's Redis (setup.sh starts one).
#
# Everything it makes lives in DOCKER_CHECK_DIR (default /var/tmp/analytics-docker-check, about
# 6 GB at its peak: vfs copies each layer in full); base images are kept there between runs, the
# build itself always starts from scratch. Not part of .ci/run (it needs root and ~10 min): run it
# when the Dockerfile, scripts/fetch_models.py, scripts/onnx_dynamic_batch.py, Cargo.lock or the
# system packages the image installs change, and before a release.
#
# Environment: DOCKER_CHECK_DIR; CHECK_API_PORT (18369); REDIS_HOST/REDIS_PORT (127.0.0.1:6379);
# KEEP_IMAGE=1 keeps the built image (localhost/analytics-service:check) in the storage;
# DOCKER_CHECK_REUSE=1 runs that kept image again instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK="${DOCKER_CHECK_DIR:-/var/tmp/analytics-docker-check}"
API_PORT="${CHECK_API_PORT:-18369}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}" REDIS_PORT="${REDIS_PORT:-6379}"
MEDIA="${ANALYTICS_PREFIX:-$ROOT/.local}/media"
IMAGE=localhost/analytics-service:check
log() { printf '[docker-check] %s\n' "$*" >&2; }
now() { date +%s; }

[ "$(id -u)" = 0 ] || { log "needs root (buildah with vfs storage and chroot isolation, debootstrap)"; exit 1; }
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { log "installing $tool (Debian)"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >/dev/null; }
done
[ -f "$MEDIA/vtest_pedestrians_768x576.mp4" ] || { log "no sample video in $MEDIA: run scripts/setup.sh first"; exit 1; }
redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG \
  || { log "no Redis answers on $REDIS_HOST:$REDIS_PORT: run scripts/setup.sh first"; exit 1; }

mkdir -p "$WORK"
exec 9>"$WORK/lock"
flock -n 9 || { log "another docker_check.sh runs on $WORK; wait for it"; exit 1; }
bah() { buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot
has_image() { bah inspect --type image "$1" >/dev/null 2>&1; }

# --- debian:bookworm-slim from debootstrap ---------------------------------------------------
if ! has_image docker.io/library/debian:bookworm-slim; then
  t=$(now)
  log "making debian:bookworm-slim with debootstrap (minbase)"
  rootfs="$WORK/rootfs-bookworm"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # like the official slim image: no docs, man pages or locales from later installs
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  printf 'APT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  # the official image's docker-clean: downloaded packages are not kept in layers
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  # This machine's own additions for HTTPS: CA certificates added locally (a TLS-inspecting
  # egress proxy; ca-certificates picks them up when a stage installs it) and pip's pointer to
  # the system bundle. Docker Hub's images on an open network need neither.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -cf "$WORK/rootfs-bookworm.tar" .
  ctr=$(bah from scratch)
  bah add "$ctr" "$WORK/rootfs-bookworm.tar" / >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$ctr"
  bah commit -q --rm "$ctr" docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$rootfs" "$WORK/rootfs-bookworm.tar"
  log "debian:bookworm-slim ready ($(($(now) - t)) s)"
fi

# --- rust:1-bookworm stand-in ----------------------------------------------------------------
if ! has_image docker.io/library/rust:1-bookworm; then
  t=$(now)
  sysroot=$(rustc --print sysroot)
  log "making a rust:1-bookworm stand-in: debian:bookworm-slim + build tools + $(rustc --version) from $sysroot"
  tar -C "$sysroot" --exclude=./share -cf "$WORK/rust-toolchain.tar" .
  ctr=$(bah from --pull=never docker.io/library/debian:bookworm-slim)
  bah run "$ctr" -- sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates curl git gcc g++ libc6-dev make pkg-config >/dev/null && rm -rf /var/lib/apt/lists/*'
  bah run "$ctr" -- mkdir -p /usr/local/rust /usr/local/cargo/bin
  bah add "$ctr" "$WORK/rust-toolchain.tar" /usr/local/rust/ >/dev/null
  bah run "$ctr" -- sh -c 'for b in cargo rustc rustdoc; do ln -s /usr/local/rust/bin/$b /usr/local/cargo/bin/$b; done; /usr/local/cargo/bin/cargo --version'
  bah config --env CARGO_HOME=/usr/local/cargo --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bah commit -q --rm "$ctr" docker.io/library/rust:1-bookworm >/dev/null
  rm -f "$WORK/rust-toolchain.tar"
  log "rust:1-bookworm stand-in ready ($(($(now) - t)) s)"
fi

# --- the build --------------------------------------------------------------------------------
ctx="$WORK/context"
rm -rf "$ctx"; mkdir -p "$ctx"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' | tar --null -T - -cf - | tar -C "$ctx" -xf -
if [ "${DOCKER_CHECK_REUSE:-0}" = 1 ] && has_image "$IMAGE"; then
  log "DOCKER_CHECK_REUSE=1: running the image built before, not building"
  build_s="(not built this time)"
else
  log "building the Dockerfile (FLAVOR=cpu) from a clean copy of the checkout (models/ empty); log: $WORK/build.log"
  bah rmi -f "$IMAGE" >/dev/null 2>&1 || true
  t=$(now)
  # --format docker keeps HEALTHCHECK (the OCI format has none), as `docker build` does
  if ! bah build --isolation chroot --format docker --pull=never --layers=false --build-arg FLAVOR=cpu \
    -t "$IMAGE" -f "$ctx/Dockerfile" "$ctx" >"$WORK/build.log" 2>&1; then
    tail -30 "$WORK/build.log" >&2
    log "FAILED: the image does not build"
    exit 1
  fi
  build_s="$(($(now) - t)) s"
fi
size=$(bah images --json "$IMAGE" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["size"])')
log "image built in ${build_s}, size $size"

# --- run it -----------------------------------------------------------------------------------
stream="docker-check:$$"
ctr=$(bah from --pull=never "$IMAGE")
cleanup() {
  if [ -n "${svc:-}" ] && kill "$svc" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$svc" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$svc" 2>/dev/null || true
  fi
  bah rm "$ctr" >/dev/null 2>&1 || true
  [ "${KEEP_IMAGE:-0}" = 1 ] || bah rmi -f "$IMAGE" >/dev/null 2>&1 || true
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" DEL "$stream" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# chroot isolation shares this machine's network: the service listens on API_PORT here and
# reaches the machine's Redis. The image's own user, entrypoint, environment and libraries.
# exec: $! is buildah itself, which passes SIGTERM on to the service
(exec buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs run --user analytics -v "$MEDIA:/media:ro" \
  --env API_PORT="$API_PORT" --env REDIS_HOST="$REDIS_HOST" --env REDIS_PORT="$REDIS_PORT" \
  --env REDIS_STREAM="$stream" --env STREAM_FILE_ROOT=/media --env BATCH_SIZE=8 \
  "$ctr" -- /opt/analytics/bin/analytics-service >"$WORK/service.log" 2>&1) &
svc=$!
health=""
for _ in $(seq 300); do
  health=$(curl -sf "http://127.0.0.1:$API_PORT/api/health" 2>/dev/null) && break
  kill -0 "$svc" 2>/dev/null || break
  sleep 0.2
done
[ -n "$health" ] || { tail -20 "$WORK/service.log" >&2; log "FAILED: /api/health does not answer"; exit 1; }
log "health: $health"
echo "$health" | python3 -c '
import json, sys
h = json.load(sys.stdin)
y = h["model"]["yolo"]
assert y["fixed_batch"] is None, "yolov8n batch axis is fixed: %s" % y  # max_batch: 1 on the CPU (BATCH_SIZE auto)
a = h["model"]["anpr"]
assert a["loaded"], "ANPR models did not load: %s" % a
# the INT8 copies travel from the build context (setup.sh made them): auto runs them on a VNNI CPU
vnni = any(f in open("/proc/cpuinfo").read() for f in ("avx512_vnni", "avx_vnni"))
want = ("int8", "int8") if vnni else ("fp32", "fp16")
assert (y["precision"], a["plate_precision"]) == want, "precision %s / %s, expected %s on this CPU" % (y["precision"], a["plate_precision"], want)
print("[docker-check] model %s on %s, batch %s, precision %s, plate detector %s" % (y["name"], y["provider"], "dynamic, max_batch %d" % y["max_batch"], y["precision"], a["plate_precision"]), file=sys.stderr)
' || { log "FAILED: health does not show loaded models (dynamic batch, INT8 on a VNNI CPU)"; exit 1; }
# the image's own HEALTHCHECK command, run inside it (curl is there, the command answers)
hc=$(bah inspect --type image "$IMAGE" \
  | python3 -c 'import json, sys; t = json.load(sys.stdin)["Docker"]["config"]["Healthcheck"]["Test"]; print(t[1] if t[0] == "CMD-SHELL" else " ".join(t[1:]))')
bah run --env API_PORT="$API_PORT" "$ctr" -- sh -c "$hc" >/dev/null \
  || { log "FAILED: the image's HEALTHCHECK ($hc) fails"; exit 1; }
log "HEALTHCHECK passes: $hc"
curl -sf -X POST "http://127.0.0.1:$API_PORT/api/cameras" -H 'Content-Type: application/json' -d '[
  {"camera_id": "check", "stream_url": "/media/vtest_pedestrians_768x576.mp4",
   "parameters": {"motion_threshold": 0.01, "detection_classes": ["person"]}}]' >/dev/null \
  || { log "FAILED: camera registration refused"; exit 1; }
got=""
for _ in $(seq 120); do
  got=$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" XRANGE "$stream" - + 2>/dev/null | { grep -E '^(motion|detection)$' || true; } | sort | uniq -c | tr -s ' \n' ' ')
  case "$got" in *detection*motion* | *motion*detection*) break ;; esac
  sleep 0.5
done
case "$got" in
  *detection*motion* | *motion*detection*) log "events from the image's service: $got" ;;
  *) tail -20 "$WORK/service.log" >&2; log "FAILED: no motion and detection events within 60 s (got: ${got:-none})"; exit 1 ;;
esac
log "OK: image $IMAGE built in ${build_s}, size $size; serves health and events"
