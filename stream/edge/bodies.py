"""Request bodies read with a cap: the declared Content-Length is checked before reading, and the
stream is read chunk by chunk and abandoned as soon as it passes the cap (chunked uploads have no
Content-Length), so a client can never make the server hold more than `cap` bytes of a body."""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(ValueError):
    """The body is (or declares itself) larger than the cap: answer 413."""

    def __init__(self, cap: int, declared: int | None = None) -> None:
        size = f"{declared} bytes" if declared is not None else "larger"
        super().__init__(f"request body is {size}; the limit is {cap} bytes")
        self.cap = cap


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.strip().isdigit() else None


async def read_capped(request: Request, cap: int) -> bytes:
    declared = declared_length(request)
    if declared is not None and declared > cap:
        raise BodyTooLarge(cap, declared)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise BodyTooLarge(cap)
    return bytes(body)
