"""`POST /predict`: recognise the gesture in one uploaded image (the seed API's shape).

Accepts a multipart form with the image in field `file`, or a raw `image/jpeg` body. In order, each
step bounded before the next costs anything:

1. admission, from the request head alone (`stream.edge.admission.FairGate`, `Services.predict_gate`):
   at most GM_PREDICT_PER_IP requests per client address (429 `too_many_in_flight`) and
   GM_PREDICT_QUEUE server-wide (503 `server_busy`) are admitted at once; a refused request is
   answered without its body being read;
2. the body, read with a hard size cap (the frame limit plus multipart overhead) and a deadline
   (GM_BODY_TIMEOUT_S, 408 `body_timeout`);
3. a turn in the uploads' own pool (`PredictService`: `max(1, workers - 1)` threads at a lower CPU
   priority than the players' frame pool, so uploads never take a player's worker or win a core
   from it); turns go round-robin across client addresses (fair shares), and a request that gets no
   turn within GM_PREDICT_WAIT_S gets 503 `server_busy`;
4. the job: the multipart body is parsed there, off the event loop, looking at no more than
   GM_MULTIPART_MAX_PARTS parts (400 `too_many_parts`), then the image is recognised on the streams'
   own path (model.recognizer.observe_frame) with MediaPipe in static-image mode (a small pool of
   such trackers, one per pool worker at most, kept by the lifespan-owned `PredictService`).
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse

from model.classifier import ModelHandle
from model.frames import FrameError
from model.recognizer import RecognitionResult
from model.schemes import SCHEMES
from stream.edge.admission import FairGate, Refused, Ticket
from stream.edge.bodies import BodyTimeout, BodyTooLarge, MultipartError, multipart_field, read_capped
from stream.edge.limits import address_key
from stream.protocol.codes import (
    BAD_REQUEST,
    BODY_TIMEOUT,
    MODEL_UNAVAILABLE,
    SERVER_BUSY,
    SHUTTING_DOWN,
    TOO_MANY_IN_FLIGHT,
)
from stream.recognition.pipeline import observe_frame_error, observe_recognition
from stream.recognition.stills import PredictService
from stream.web.errors import error_response
from stream.web.services import services_of

MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers on top of the image itself
_RETRY = {"Retry-After": "1"}


class PredictError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


_REFUSALS = {
    "per_key": PredictError(
        429, TOO_MANY_IN_FLIGHT, "this address already has predictions in progress; await them first", _RETRY
    ),
    "full": PredictError(503, SERVER_BUSY, "too many predictions in progress; retry shortly", _RETRY),
    "busy": PredictError(503, SERVER_BUSY, "too many predictions in progress; retry shortly", _RETRY),
}


async def predict_endpoint(request: Request) -> JSONResponse:
    services = services_of(request)
    settings, metrics, gate = services.settings, services.metrics, services.predict_gate
    started = time.perf_counter()
    ticket = None
    try:
        scheme = request.query_params.get("scheme", settings.default_scheme)
        if scheme not in SCHEMES:
            raise PredictError(400, BAD_REQUEST, f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
        models = services.models
        if models is None:
            raise PredictError(503, MODEL_UNAVAILABLE, "no gesture model is loaded")
        if services.pipeline.closed:
            raise PredictError(503, SHUTTING_DOWN, "the server is shutting down")
        ticket = gate.admit(address_key(request.client.host if request.client else None))
        content_type = request.headers.get("content-type", "")
        body = await _read_body(request, content_type, settings.max_frame_bytes, settings.body_timeout_s)
        await gate.turn(ticket)
        parts = settings.multipart_max_parts
        job = partial(_recognise_upload, services.predict, body, content_type, parts, models, scheme)
        running = asyncio.ensure_future(services.predict.run(job))
        try:
            result = await asyncio.shield(running)
        except asyncio.CancelledError:
            # The job runs on in the pool: its slot is given back when it ends, not before.
            running.add_done_callback(partial(_leave_when_done, gate, ticket))
            ticket = None
            raise
    except Refused as exc:
        refusal = _REFUSALS[exc.reason]
        metrics.errors.labels(code=refusal.code).inc()
        return error_response(refusal.status, refusal.code, refusal.message, refusal.headers)
    except PredictError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except FrameError as exc:
        observe_frame_error(metrics, exc.code)
        status = 413 if exc.code == "frame_too_large" else 400
        return error_response(status, exc.code, exc.message)
    finally:
        if ticket is not None:
            gate.leave(ticket)
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


def _leave_when_done(gate: FairGate, ticket: Ticket, done: asyncio.Future[RecognitionResult]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: nobody awaits it any more
    gate.leave(ticket)


def _is_multipart(content_type: str) -> bool:
    return content_type.lower().startswith("multipart/form-data")


async def _read_body(request: Request, content_type: str, max_bytes: int, timeout_s: float) -> bytes:
    cap = max_bytes + (MULTIPART_OVERHEAD if _is_multipart(content_type) else 0)
    try:
        return await read_capped(request, cap, timeout_s or None)
    except BodyTooLarge as exc:
        raise FrameError("frame_too_large", f"{exc} (frame limit {max_bytes} bytes)") from None
    except BodyTimeout as exc:
        raise PredictError(408, BODY_TIMEOUT, str(exc)) from None


def _recognise_upload(
    predict: PredictService, body: bytes, content_type: str, max_parts: int, models: ModelHandle, scheme: str
) -> RecognitionResult:
    """The pool job (blocking): the image out of its multipart body, then its recognition."""
    image = body
    if _is_multipart(content_type):
        try:
            found = multipart_field(body, content_type, "file", max_parts)
        except MultipartError as exc:
            raise PredictError(400, exc.code, str(exc)) from None
        if found is None:
            raise FrameError("empty_frame", "no image: send multipart field `file` or a raw image/jpeg body")
        image = found
    return predict.recognise(image, models, scheme)
