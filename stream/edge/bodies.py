"""Request bodies: read with a cap and a deadline, and parsed with bounded work.

- `read_capped(request, cap, timeout_s=None) -> bytes`: the declared Content-Length is checked before
  reading, and the stream is read chunk by chunk and abandoned as soon as it passes the cap (chunked
  uploads have no Content-Length), so a client can never make the server hold more than `cap` bytes
  of a body (`BodyTooLarge`); with `timeout_s`, a body not complete that long after reading began
  raises `BodyTimeout` (a trickled body cannot hold its admission forever).
- `multipart_field(body, content_type, name, max_parts) -> bytes | None`: the content of form field
  `name` of a `multipart/form-data` body (RFC 7578), or None when there is no such field. Work is
  bounded whatever the body holds: delimiters are found with `bytes.find` (C speed, no copies of the
  parts), at most `max_parts` parts are looked at, and a body with more (before its closing
  delimiter) raises `MultipartError("too_many_parts")`; a malformed body raises
  `MultipartError("bad_request")`. Blocking CPU work on up to a frame's worth of bytes: callers run it
  off the event loop (`POST /predict` runs it in its pool job, after admission).
"""

from __future__ import annotations

import asyncio
import re

from starlette.requests import Request

_BOUNDARY = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_MAX_BOUNDARY = 70  # RFC 2046
_MAX_PART_HEAD = 1024  # a part's own headers (Content-Disposition, Content-Type): a few hundred bytes


class BodyTooLarge(ValueError):
    """The body is (or declares itself) larger than the cap: answer 413."""

    def __init__(self, cap: int, declared: int | None = None) -> None:
        size = f"{declared} bytes" if declared is not None else "larger"
        super().__init__(f"request body is {size}; the limit is {cap} bytes")
        self.cap = cap


class BodyTimeout(TimeoutError):
    """The body did not arrive in time: answer 408."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:g} s")


class MultipartError(ValueError):
    """A multipart body that is refused: `code` is "too_many_parts" or "bad_request"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.strip().isdigit() else None


async def read_capped(request: Request, cap: int, timeout_s: float | None = None) -> bytes:
    declared = declared_length(request)
    if declared is not None and declared > cap:
        raise BodyTooLarge(cap, declared)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > cap:
                    raise BodyTooLarge(cap)
    except TimeoutError:
        raise BodyTimeout(timeout_s or 0.0) from None
    return bytes(body)


def multipart_field(body: bytes, content_type: str, name: str, max_parts: int) -> bytes | None:
    match = _BOUNDARY.search(content_type)
    if match is None or len(match.group(1)) > _MAX_BOUNDARY:
        raise MultipartError("bad_request", "multipart body without a usable boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:  # a preamble before the first delimiter is allowed (and ignored)
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise MultipartError("bad_request", "multipart body without its boundary")
        pos = start + 2 + len(delimiter)
    separator = b"\r\n" + delimiter
    wanted = name.encode("latin-1")
    found: bytes | None = None
    parts = 0
    while True:
        if body.startswith(b"--", pos):
            return found  # the closing delimiter: what comes after it is an epilogue
        parts += 1
        if parts > max_parts:
            raise MultipartError("too_many_parts", f"a multipart body may have at most {max_parts} parts")
        end = body.find(separator, pos)
        if end < 0:
            raise MultipartError("bad_request", "multipart body without its closing boundary")
        head_end = body.find(b"\r\n\r\n", pos, min(end, pos + _MAX_PART_HEAD))
        if head_end < 0:
            raise MultipartError("bad_request", "a multipart part without a (short) header block")
        if found is None and _is_field(body[pos:head_end], wanted):
            found = body[head_end + 4 : end]
        pos = end + len(separator)


def _is_field(head: bytes, wanted: bytes) -> bool:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-disposition:"):
            match = _FIELD_NAME.search(line)
            return match is not None and match.group(1) == wanted
    return False
