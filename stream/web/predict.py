"""`POST /predict`: recognise the gesture in one uploaded image (the seed API's shape).

Accepts a multipart form with the image in field `file`, or a raw `image/jpeg` body. The body is
read with a hard size cap (never more than the frame limit plus multipart overhead in memory), the
CPU work runs in the shared frame pool, and single images use MediaPipe in static-image mode (no
stream to track): a small pool of such trackers, one per pool worker at most, is kept on app.state.
"""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from model.frames import FrameError, decode_jpeg, frame_stats
from model.landmarks import HandTracker, detect_padded
from model.recognizer import RecognitionResult, classify_hand
from model.schemes import SCHEMES, counting_table
from stream.edge.bodies import BodyTooLarge, read_capped
from stream.recognition.pipeline import observe_frame_error, observe_recognition

_MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers on top of the image itself
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)


class PredictError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class StaticTrackerPool:
    """Idle static-image-mode HandTrackers; at most one per pool thread is ever created."""

    def __init__(self, factory: Callable[[], HandTracker]) -> None:
        self._factory = factory
        self._idle: queue.SimpleQueue[HandTracker] = queue.SimpleQueue()
        self._closed = False

    def acquire(self) -> HandTracker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._factory()  # bounded by the pool size: only pool threads call this

    def release(self, tracker: HandTracker) -> None:
        if self._closed:
            tracker.close()
        else:
            self._idle.put(tracker)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class PredictGate:
    """Admission for /predict jobs: at most `limit` in the shared pool (queued or running) at once.

    /predict is unauthenticated CPU work in the pool the players' frames use; the executor's own
    queue is unbounded, so without this a flood of uploads would queue ahead of every game. With it,
    a player's frame waits behind at most `limit` predictions. Used from the event loop only.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


def _predict_gate(app: Any) -> PredictGate:
    gate = getattr(app.state, "predict_gate", None)
    if gate is None:
        # Leave at least one worker to the players when there are several.
        gate = PredictGate(app.state.settings.worker_count - 1)
        app.state.predict_gate = gate
    return gate


def _tracker_pool(app: Any) -> StaticTrackerPool:
    pool = getattr(app.state, "predict_trackers", None)
    if pool is None:
        settings = app.state.settings
        pool = StaticTrackerPool(
            lambda: HandTracker(
                model_complexity=settings.model_complexity,
                min_detection_confidence=settings.min_detection_confidence,
                static_image_mode=True,
            )
        )
        app.state.predict_trackers = pool
    return pool


def close_predict_state(app: Any) -> None:
    """Release the /predict trackers (call from the lifespan's shutdown)."""
    pool = getattr(app.state, "predict_trackers", None)
    if pool is not None:
        pool.close()


async def predict_endpoint(request: Request) -> JSONResponse:
    app = request.app
    settings = app.state.settings
    metrics = getattr(app.state, "metrics", None)
    started = time.perf_counter()
    try:
        scheme = request.query_params.get("scheme", settings.default_scheme)
        if scheme not in SCHEMES:
            raise PredictError(400, "bad_request", f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
        image = await _read_image(request, settings.max_frame_bytes)
        trackers = _tracker_pool(app)
        classifier_source = _classifier_source(app)
        counting = counting_table(settings.counting_map)

        def work() -> RecognitionResult:
            return _recognise(image, settings, trackers, classifier_source, scheme, counting)

        pipeline = app.state.pipeline
        if pipeline.closed:
            raise PredictError(503, "shutting_down", "the server is shutting down")
        gate = _predict_gate(app)
        if not gate.try_enter():
            raise PredictError(503, "server_busy", "too many predictions in progress; retry shortly")
        try:
            result = await pipeline.run(work)
        finally:
            gate.leave()
    except PredictError as exc:
        headers = {"Retry-After": "1"} if exc.code == "server_busy" else None
        return _error(exc.status, exc.code, exc.message, headers)
    except FrameError as exc:
        if metrics is not None:
            observe_frame_error(metrics, exc.code)
        status = 413 if exc.code == "frame_too_large" else 400
        return _error(status, exc.code, exc.message)
    if metrics is not None:
        observe_recognition(metrics, result)
    return JSONResponse(
        {
            "gesture": result.gesture,
            "confidence": round(result.confidence, 4),
            "direction": result.direction.value if result.direction is not None else None,
            "hand": result.hand,
            "landmarks": result.landmarks,
            "processing_time": round(time.perf_counter() - started, 4),
        }
    )


def _classifier_source(app: Any) -> Callable[[], Any]:
    models = app.state.models
    return lambda: models.current


def _recognise(
    image: bytes,
    settings: Any,
    trackers: StaticTrackerPool,
    classifier_source: Callable[[], Any],
    scheme: str,
    counting: dict[str, Any],
) -> RecognitionResult:
    t0 = time.perf_counter()
    rgb = decode_jpeg(image, settings.max_frame_bytes, settings.max_frame_width, settings.max_frame_height)
    stats = frame_stats(rgb, len(image))
    t1 = time.perf_counter()
    tracker = trackers.acquire()
    try:
        # A hand filling the whole picture is missed by the palm detector: retry on padded copies.
        hand, _ = detect_padded(tracker, rgb, settings.predict_pad)
    finally:
        trackers.release(tracker)
    t2 = time.perf_counter()
    gesture, confidence, direction = classify_hand(hand, classifier_source, scheme, counting)
    t3 = time.perf_counter()
    # A single image has no history to smooth: no command.
    return RecognitionResult.timed(hand, (gesture, confidence, direction), None, stats, (t0, t1, t2, t3))


async def _read_image(request: Request, max_bytes: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    multipart = content_type.lower().startswith("multipart/form-data")
    cap = max_bytes + (_MULTIPART_OVERHEAD if multipart else 0)
    try:
        body = await read_capped(request, cap)
    except BodyTooLarge as exc:
        raise FrameError("frame_too_large", f"{exc} (frame limit {max_bytes} bytes)") from None
    if multipart:
        return _multipart_file(body, content_type)
    return body


def _multipart_file(body: bytes, content_type: str) -> bytes:
    """The content of form field `file` (a minimal RFC 7578 reader: one part wanted, no nesting)."""
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise PredictError(400, "bad_request", "multipart body without a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # closing delimiter
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-disposition:"):
                name = _FIELD_NAME.search(line)
                if name is not None and name.group(1) == b"file":
                    return content[:-2] if content.endswith(b"\r\n") else content
    raise FrameError("empty_frame", "no image: send multipart field `file` or a raw image/jpeg body")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
