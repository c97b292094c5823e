"""Every HTTP error the app answers is `{"error": {"code", "message"}}` (stream.protocol.errors),
never plain text.

`error_response` is the endpoints' one way to answer an error. `exception_handlers()` goes to
`Starlette(exception_handlers=...)`: HTTPException (404 from the static files, 405 for a wrong
method) keeps its status with a JSON body; any other exception becomes a 500 `internal_error`
answered by Starlette's ServerErrorMiddleware (which still logs the traceback once and re-raises it
to uvicorn, so a real bug stays visible).
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stream.protocol.codes import INTERNAL_ERROR
from stream.protocol.errors import error_body


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    message = exc.detail if isinstance(exc.detail, str) else _code_for(exc.status_code)
    return error_response(exc.status_code, _code_for(exc.status_code), message, exc.headers)


async def unexpected_exception(request: Request, exc: Exception) -> Response:
    return error_response(500, INTERNAL_ERROR, "the server failed to handle this request")


def exception_handlers() -> dict[type[Exception] | int, object]:
    return {HTTPException: http_exception, Exception: unexpected_exception}
