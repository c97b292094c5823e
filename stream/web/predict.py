"""`POST /predict`: recognise the gesture in one uploaded image (the seed API's shape).

Accepts a multipart form with the image in field `file`, or a raw `image/jpeg` body. The body is
read with a hard size cap (never more than the frame limit plus multipart overhead in memory), the
CPU work runs in the shared frame pool, and single images use MediaPipe in static-image mode (no
stream to track): a small pool of such trackers, one per pool worker at most, is kept by the
lifespan-owned `PredictService`. Recognition is the streams' own path (model.recognizer.recognise_frame).
"""

from __future__ import annotations

import re
import time
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse

from model.frames import FrameError
from model.schemes import SCHEMES
from stream.edge.bodies import BodyTooLarge, read_capped
from stream.protocol.codes import BAD_REQUEST, MODEL_UNAVAILABLE, SERVER_BUSY, SHUTTING_DOWN
from stream.recognition.pipeline import observe_frame_error, observe_recognition
from stream.web.errors import error_response
from stream.web.services import services_of

_MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers on top of the image itself
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)


class PredictError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def predict_endpoint(request: Request) -> JSONResponse:
    services = services_of(request)
    settings, metrics, predict = services.settings, services.metrics, services.predict
    started = time.perf_counter()
    try:
        scheme = request.query_params.get("scheme", settings.default_scheme)
        if scheme not in SCHEMES:
            raise PredictError(400, BAD_REQUEST, f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
        models = services.models
        if models is None:
            raise PredictError(503, MODEL_UNAVAILABLE, "no gesture model is loaded")
        image = await _read_image(request, settings.max_frame_bytes)
        if services.pipeline.closed:
            raise PredictError(503, SHUTTING_DOWN, "the server is shutting down")
        if not predict.gate.try_enter():
            raise PredictError(503, SERVER_BUSY, "too many predictions in progress; retry shortly")
        try:
            result = await services.pipeline.run(partial(predict.recognise, image, models, scheme))
        finally:
            predict.gate.leave()
    except PredictError as exc:
        headers = {"Retry-After": "1"} if exc.code == SERVER_BUSY else None
        return error_response(exc.status, exc.code, exc.message, headers)
    except FrameError as exc:
        observe_frame_error(metrics, exc.code)
        status = 413 if exc.code == "frame_too_large" else 400
        return error_response(status, exc.code, exc.message)
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
        raise PredictError(400, BAD_REQUEST, "multipart body without a boundary")
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
