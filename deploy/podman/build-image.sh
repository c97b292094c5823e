#!/usr/bin/env bash
# Build (and optionally run) the Gesture Maze image with podman, from a base made of Debian packages:
# no container registry is needed, only Debian's mirror and PyPI.
#
#   deploy/podman/build-image.sh             # base images (cached) + the serving image gesture-maze:latest
#   deploy/podman/build-image.sh train       # + the training image gesture-maze-train:latest
#   deploy/podman/build-image.sh services    # + redis and nginx images for deploy/podman/compose.yml
#   deploy/podman/build-image.sh base        # only the Debian + Python bases (cached)
#   deploy/podman/build-image.sh run         # build, then run it on http://127.0.0.1:${GM_PORT:-8000}
#
# Steps, each skipped when its result already exists:
#   1. `debootstrap --variant=minbase bookworm` -> `podman import` -> localhost/gesture-maze-debian:<hash>
#   2. deploy/podman/python.Containerfile -> localhost/gesture-maze-python:<hash> (python3.11 venv at
#      /usr/local: the paths of the official python:3.11-slim)
#   3. the repo's Dockerfile with BASE=that image -> gesture-maze:latest (podman's layer cache makes
#      a rebuild after a source change take seconds: only the wheel and its install layer rerun)
# <hash> is a content hash of this recipe (suite, mirror, the Containerfiles), so a change to the recipe
# makes new bases and an unchanged one is reused. Needs root, podman, runc, debootstrap
# (`apt-get install podman runc debootstrap`). Prints one JSON line with the images' sizes and times.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
SUITE="${GM_DEBIAN_SUITE:-bookworm}"
MIRROR="${GM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE="${GM_IMAGE:-gesture-maze:latest}"
TRAIN_IMAGE="${GM_TRAIN_IMAGE:-gesture-maze-train:latest}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gesture-maze"
PODMAN=(podman)
BUILD=("${PODMAN[@]}" build --network host --format docker --layers)
# Trust the host's CA bundle inside the builds too (pip through a TLS-inspecting proxy).
HOST_CA=/etc/ssl/certs/ca-certificates.crt
[ -r "$HOST_CA" ] && BUILD+=(--volume "$HOST_CA:/etc/ssl/certs/host-ca.crt:ro" --env PIP_CERT=/etc/ssl/certs/host-ca.crt)

recipe_hash=$( { echo "$SUITE $MIRROR minbase"; cat "$HERE/python.Containerfile"; } | sha256sum | cut -c1-12)
service_hash=$( { echo "$recipe_hash"; cat "$HERE/service.Containerfile"; } | sha256sum | cut -c1-12)
DEBIAN_IMAGE="localhost/gesture-maze-debian:$recipe_hash"
PYTHON_IMAGE="localhost/gesture-maze-python:$recipe_hash"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
size() { "${PODMAN[@]}" image inspect --format '{{.Size}}' "$1"; }
exists() { "${PODMAN[@]}" image exists "$1"; }
log() { echo "build-image: $*" >&2; }

debian_base() {
  exists "$DEBIAN_IMAGE" && return
  mkdir -p "$CACHE"
  local tarball="$CACHE/debian-$SUITE-$recipe_hash.tar"
  if [ ! -s "$tarball" ]; then
    local root
    root="$(mktemp -d)"
    log "debootstrap $SUITE (minbase) from $MIRROR"
    debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . >"$tarball.part" && mv "$tarball.part" "$tarball"
    rm -rf "$root"
  fi
  "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' "$tarball" "$DEBIAN_IMAGE" >/dev/null
}

python_base() {
  exists "$PYTHON_IMAGE" && return
  log "python base $PYTHON_IMAGE"
  "${BUILD[@]}" --build-arg "DEBIAN=$DEBIAN_IMAGE" -t "$PYTHON_IMAGE" -f "$HERE/python.Containerfile" "$HERE" >&2
}

app_image() {  # $1: target (serve|train), $2: tag
  log "$2 from Dockerfile (target $1)"
  "${BUILD[@]}" --build-arg "BASE=$PYTHON_IMAGE" --target "$1" -t "$2" -f "$REPO/Dockerfile" "$REPO" >&2
}

service_images() {
  for spec in "redis:redis-server" "nginx:nginx-light wget"; do
    local name="localhost/gesture-maze-${spec%%:*}:$service_hash"
    exists "$name" || "${BUILD[@]}" --build-arg "DEBIAN=$DEBIAN_IMAGE" --build-arg "PACKAGES=${spec#*:}" \
      -t "$name" -f "$HERE/service.Containerfile" "$HERE" >&2
    "${PODMAN[@]}" tag "$name" "localhost/gesture-maze-${spec%%:*}:latest"
  done
}

started=$(now)
debian_base
python_base
base_done=$(now)
[[ " $* " == *" base "* ]] && { log "base ready: $PYTHON_IMAGE"; exit 0; }
app_image serve "$IMAGE"
app_done=$(now)
extra=""
for arg in "$@"; do
  case "$arg" in
    train) app_image train "$TRAIN_IMAGE"; extra="$extra, \"train_bytes\": $(size "$TRAIN_IMAGE")";;
    services) service_images;;
    run|"") ;;
    *) echo "unknown argument: $arg" >&2; exit 2;;
  esac
done
base_bytes=$(size "$PYTHON_IMAGE")
image_bytes=$(size "$IMAGE")
printf '{"base": "%s", "image": "%s", "base_bytes": %s, "image_bytes": %s, "added_bytes": %s, "base_s": %.1f, "image_s": %.1f%s}\n' \
  "$PYTHON_IMAGE" "$IMAGE" "$base_bytes" "$image_bytes" "$((image_bytes - base_bytes))" \
  "$(elapsed "$started" "$base_done")" "$(elapsed "$base_done" "$app_done")" "$extra"

if [[ " $* " == *" run "* ]]; then
  port="${GM_PORT:-8000}"
  log "serving on http://127.0.0.1:$port (Ctrl-C stops)"
  exec "${PODMAN[@]}" run --rm --no-healthcheck --network host -e GM_HOST=127.0.0.1 -e GM_PORT="$port" "$IMAGE" \
    gesture-maze serve --host 127.0.0.1 --port "$port"
fi
