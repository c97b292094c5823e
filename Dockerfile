# Gesture Maze server image: one process (uvicorn via `gesture-maze serve`), non-root, pinned deps.
#   docker build -t gesture-maze .    docker run -p 8000:8000 gesture-maze
# The app goes in as the wheel built from the sources (`pip wheel .`), exactly what `pip install`
# of a release gives: the web client (frontend/) and the default model are that wheel's package data.

# Stage 1: the wheel. Only the sources and pyproject go in; nothing of this stage but the wheel is kept.
FROM python:3.11-slim AS wheel
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

# Stage 2: the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# mediapipe 0.10.21 pulls opencv-contrib-python (the only cv2 distribution we install), whose cv2
# needs libGL and glib even when no window is ever opened.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first (this layer is rebuilt only when the lock or pyproject changes). The runtime
# dependencies of pyproject are installed with requirements.lock (`pip freeze`) as constraints, so
# every package, transitive ones included, has the locked version, and test-only tools stay out.
COPY requirements.lock pyproject.toml ./
# The `redis` extra too: replicas share sessions through GM_STORE_URL=redis://... (docker-compose.yml).
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['redis']))" \
        > /tmp/runtime-requirements.txt \
    && pip install -c requirements.lock -r /tmp/runtime-requirements.txt \
    && rm /tmp/runtime-requirements.txt

# Then the app: the wheel from stage 1, its dependencies already in place (--no-deps). A change to
# the sources rebuilds only the wheel and this layer.
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/gesture_maze-*.whl \
    && rm -rf /tmp/wheels \
    && mkdir -p /data \
    && chown app:app /data

USER app

# One BLAS thread per worker (the frame pool is the parallelism); glibc arenas capped so memory of
# closed MediaPipe graphs is reused instead of growing RSS.
ENV GM_HOST=0.0.0.0 \
    GM_PORT=8000 \
    GM_DATA_DIR=/data \
    OPENBLAS_NUM_THREADS=1 \
    MALLOC_ARENA_MAX=2

EXPOSE 8000
VOLUME ["/data"]

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

CMD ["gesture-maze", "serve", "--host", "0.0.0.0", "--port", "8000"]
