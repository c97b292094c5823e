"""The one shape of an HTTP error body, `{"error": {"code", "message"}}`, for every layer that
answers one (the transport's raw replies, the Host/Origin guards, the REST endpoints)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_json(code: str, message: str) -> bytes:
    return json.dumps(error_body(code, message), separators=(",", ":")).encode()


def json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


async def send_error_response(
    send: Callable[[dict[str, Any]], Awaitable[None]], status: int, code: str, message: str, *,
    websocket: bool = False,
) -> None:
    """Answer an ASGI request with the error body (`websocket`: as a handshake's denial response)."""
    body = error_json(code, message)
    prefix = "websocket.http.response" if websocket else "http.response"
    await send({"type": f"{prefix}.start", "status": status, "headers": json_headers(body)})
    await send({"type": f"{prefix}.body", "body": body})
