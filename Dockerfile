# Gesture Maze images: one process (uvicorn via `gesture-maze serve`), non-root, pinned deps.
#   docker build -t gesture-maze .                                  the serving image (last stage)
#   docker build --target train -t gesture-maze-train .             + training deps (`gesture-maze retrain`)
#   deploy/podman/build-image.sh                                    the same with podman, from a Debian-made base
# BASE is the official python:3.11-slim, or deploy/podman's python3.11 venv at /usr/local on Debian
# bookworm minbase (same paths). The app goes in as the wheel built from the sources (`pip wheel .`),
# exactly what `pip install` of a release gives: the web client (frontend/) and the default model are
# that wheel's package data. docs/deployment.md has the measured sizes.
ARG BASE=python:3.11-slim

# Stage 1: the wheel. Only the sources and pyproject go in; nothing of this stage but the wheel is kept.
FROM ${BASE} AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md is pyproject's `readme`, needed to build the wheel.
COPY pyproject.toml README.md ./
COPY stream/ stream/
COPY model/ model/
COPY maze/ maze/
COPY frontend/ frontend/
RUN pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: pyproject's dependency lists as requirement files. Only their text reaches the image
# stages (COPY --from is cached by content), so editing pyproject elsewhere (version, tools, test
# extras) does not rebuild the dependency layer. Serving: `dependencies` without mediapipe and its
# cv2 (installed from deploy/image/mediapipe-runtime.txt with --no-deps), + the `redis` extra
# (replicas share sessions through GM_STORE_URL=redis://...). Training: the `train` extra.
FROM ${BASE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = p['optional-dependencies']; skip = ('mediapipe', 'opencv-contrib-python'); \
open('serve.txt', 'w').write('\n'.join(r for r in p['dependencies'] + extras['redis'] if not r.startswith(skip))); \
open('train.txt', 'w').write('\n'.join(extras['train']))"

# Stage 3: everything serving needs, as user `app`.
FROM ${BASE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first (this layer is rebuilt only when the lock, the dependency lists or the MediaPipe
# list change), with requirements.lock (`pip freeze`) as constraints, so every package, transitive
# ones included, has the locked version. Serving only: mlflow-skinny loads `models:/` URIs (full
# mlflow, its pandas/pyarrow and matplotlib's plots are the `train` extra); mediapipe and its cv2
# come from deploy/image/mediapipe-runtime.txt with --no-deps: only what the hand solution imports.
COPY requirements.lock deploy/image/mediapipe-runtime.txt ./
COPY --from=requirements /src/serve.txt /src/train.txt ./
RUN pip install -c requirements.lock -r serve.txt \
    && pip install --no-deps -c requirements.lock -r mediapipe-runtime.txt \
    && find /usr/local -name __pycache__ -prune -exec rm -rf {} +

# Then the app: the wheel from stage 1, its dependencies already in place (--no-deps). A change to
# the sources rebuilds only the wheel and this layer.
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/gesture_maze-*.whl \
    && rm -rf /tmp/wheels \
    && mkdir -p /data \
    && chown app:app /data

# Edge mode's browser runtime (MediaPipe Hands for the web, from the npm registry, integrity-checked):
# fetched here at build time, so the container never downloads anything at run time. Offline builds
# get an image whose page streams JPEG frames only (--optional: a warning, not a failure). The host's
# CA bundle, when deploy/podman/build-image.sh mounts it (a TLS-inspecting proxy), is trusted for this
# one step only: SSL_CERT_FILE is not left in the image.
ENV GM_EDGE_ASSETS_DIR=/opt/gesture-maze/edge
RUN if [ -r /etc/ssl/certs/host-ca.crt ]; then export SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt; fi; \
    gesture-maze edge-assets --optional

# One BLAS thread per worker (the frame pool is the parallelism); glibc arenas capped so memory of
# closed MediaPipe graphs is reused instead of growing RSS; matplotlib (imported by mediapipe) caches
# in /tmp, since the home directory is not writable (read-only root filesystem on Kubernetes).
ENV GM_HOST=0.0.0.0 \
    GM_PORT=8000 \
    GM_DATA_DIR=/data \
    OPENBLAS_NUM_THREADS=1 \
    MALLOC_ARENA_MAX=2 \
    MPLCONFIGDIR=/tmp/matplotlib

# Training image (`--target train`): + the `train` extra (full mlflow, matplotlib). Where
# `gesture-maze train` / `retrain` run (docker-compose.yml's `retrain` job); never served.
FROM runtime AS train
RUN pip install -c requirements.lock -r train.txt
USER app
CMD ["gesture-maze", "retrain", "--help"]

# The serving image (the default target).
FROM runtime AS serve
USER app
EXPOSE 8000
VOLUME ["/data"]

# Honoured by Docker and by podman when built with `--format docker` (an OCI image has no
# HEALTHCHECK); Kubernetes uses the probes in deploy/k8s/ instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

CMD ["gesture-maze", "serve", "--host", "0.0.0.0", "--port", "8000"]
