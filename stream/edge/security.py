"""Origin checks (cross-site WebSocket hijacking), CORS, token handling and log redaction.

API:
- `origin_allowed(origin: str | None, host_header: str, scheme: str, allowed: tuple[str, ...]) -> bool`
  * `origin` None/"" (no Origin header: a non-browser client such as the load-test tool) -> allowed;
  * the server's own origin (same scheme, host and port as `scheme` + the `Host` header; `ws`/`wss`
    count as `http`/`https`, default ports are implied) -> allowed;
  * an origin in `allowed` (e.g. `("https://maze.example.com",)`, normalised the same way) -> allowed;
  * `"*"` in `allowed` -> everything allowed; anything else, including `Origin: null`, -> refused.
- `check_scope_origin(scope, allowed) -> bool`: `origin_allowed` applied to an ASGI http/websocket scope.
- `OriginGuardMiddleware(app, allowed, on_reject=None)`: pure ASGI middleware. A WebSocket handshake
  from a refused origin is closed before accept (uvicorn answers HTTP 403); an unsafe HTTP request
  (POST/PUT/PATCH/DELETE) from a refused origin gets 403 `{"error":{"code":"origin_not_allowed",...}}`.
  GET/HEAD/OPTIONS pass (CORS already keeps their responses from foreign pages). `on_reject(kind)` is
  called with "websocket" or "http" (e.g. to count it in metrics).
- `cors_middleware(allowed) -> Middleware | None`: Starlette `CORSMiddleware` for the allow-list; None
  when the list is empty (same-origin only: browsers need no CORS headers for that).
- `security_middleware(allowed, on_reject=None) -> list[Middleware]`: CORS (if any) + origin guard,
  to pass as `Starlette(middleware=...)`.
- `FrameDenyMiddleware(app)`: pure ASGI middleware; every HTTP response (pages, the client's scripts,
  API answers and errors alike) gets `X-Frame-Options: DENY` and `Content-Security-Policy:
  frame-ancestors 'none'` unless it already carries that header, so no other site can frame a page
  and trick a click on it (clickjacking). The proxy configs add the same where the app did not answer.
- `new_token() -> str`: an unguessable URL-safe token (256 bits).
- `tokens_equal(a: str | None, b: str | None) -> bool`: constant-time comparison (hmac.compare_digest);
  None or "" never equals anything.
- `redact(text: str) -> str`: replaces the value of every `*token*`, `key`, `secret`, `password`
  query parameter or JSON field in a URL, query string or log line with `[REDACTED]`.
- `RedactingFilter` (logging.Filter) and `install_log_redaction(names=("uvicorn.access",
  "uvicorn.error", "")) -> None`: uvicorn logs every request path *with its query string*, and the
  play URL carries the player token, so the server installs this filter at start-up.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from stream.protocol.codes import CLOSE_POLICY, ORIGIN_NOT_ALLOWED
from stream.protocol.errors import send_error_response

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME_ALIASES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Origin = tuple[str, str, int]  # (scheme, lowercase host, port)


def _normalise_origin(origin: str) -> Origin | None:
    """`https://Example.com` -> ("https", "example.com", 443); None if it is not a usable origin."""
    try:
        parts = urlsplit(origin.strip())
        scheme = _SCHEME_ALIASES.get(parts.scheme.lower())
        host = parts.hostname
        port = parts.port
    except ValueError:  # bad port, bad IPv6 literal
        return None
    if scheme is None or not host:
        return None
    return scheme, host.lower().rstrip("."), port if port is not None else _DEFAULT_PORTS[scheme]


def _server_origin(host_header: str, scheme: str) -> Origin | None:
    if not host_header:
        return None
    return _normalise_origin(f"{scheme.lower()}://{host_header.strip()}")


def origin_allowed(origin: str | None, host_header: str, scheme: str, allowed: tuple[str, ...]) -> bool:
    if origin is None or origin == "":
        return True  # not a browser: Origin checks defend browsers' ambient credentials only
    if "*" in allowed:
        return True
    candidate = _normalise_origin(origin)
    if candidate is None:  # "null" (sandboxed iframes, file://) and garbage
        return False
    if candidate == _server_origin(host_header, scheme):
        return True
    return any(candidate == _normalise_origin(entry) for entry in allowed if entry != "*")


def _header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def check_scope_origin(scope: MutableMapping[str, Any], allowed: tuple[str, ...]) -> bool:
    host = _header(scope, b"host")
    if host is None and scope.get("server"):
        server_host, server_port = scope["server"][0], scope["server"][1]
        host = f"[{server_host}]:{server_port}" if ":" in str(server_host) else f"{server_host}:{server_port}"
    return origin_allowed(_header(scope, b"origin"), host or "", scope.get("scheme", "http"), allowed)


ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


class OriginGuardMiddleware:
    """Refuses WebSocket handshakes and unsafe HTTP requests whose Origin is not allowed."""

    def __init__(
        self,
        app: ASGIApp,
        allowed: tuple[str, ...] = (),
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.allowed = tuple(allowed)
        self.on_reject = on_reject

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "websocket" and not check_scope_origin(scope, self.allowed):
            self._rejected("websocket")
            # Closing before accept makes the server refuse the handshake with HTTP 403.
            await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": "origin not allowed"})
            return
        if (
            kind == "http"
            and scope.get("method", "GET").upper() in _UNSAFE_METHODS
            and not check_scope_origin(scope, self.allowed)
        ):
            self._rejected("http")
            await send_error_response(send, 403, ORIGIN_NOT_ALLOWED, "this origin may not call the API")
            return
        await self.app(scope, receive, send)

    def _rejected(self, kind: str) -> None:
        if self.on_reject is not None:
            self.on_reject(kind)


def cors_middleware(allowed: tuple[str, ...]) -> Middleware | None:
    if not allowed:
        return None
    origins = ["*"] if "*" in allowed else [o.rstrip("/") for o in allowed]
    # No credentials: the API authenticates with tokens in the body/URL, never with cookies.
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["content-type"],
        allow_credentials=False,
        max_age=600,
    )


def security_middleware(
    allowed: tuple[str, ...], on_reject: Callable[[str], None] | None = None
) -> list[Middleware]:
    stack: list[Middleware] = []
    cors = cors_middleware(allowed)
    if cors is not None:
        stack.append(cors)  # outermost, so preflight OPTIONS is answered before the guard
    stack.append(Middleware(OriginGuardMiddleware, allowed=tuple(allowed), on_reject=on_reject))
    return stack


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_equal(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    # compare_digest on bytes: str arguments must be ASCII, and a token from the URL may not be.
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


_SECRET_NAME = r"[A-Za-z0-9_\-]*(?:token|secret|password|passwd|api[_-]?key)[A-Za-z0-9_\-]*|key"
_QUERY_SECRET = re.compile(rf"(?i)(?<![A-Za-z0-9_\-])((?:{_SECRET_NAME})=)[^&\s#\"']*")
_JSON_SECRET = re.compile(rf"(?i)(\"(?:{_SECRET_NAME})\"\s*:\s*\")[^\"]*(\")")
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Strip secret values from a URL, query string or log line; everything else is kept."""
    if not text:
        return text
    text = _QUERY_SECRET.sub(rf"\g<1>{REDACTED}", text)
    return _JSON_SECRET.sub(rf"\g<1>{REDACTED}\g<2>", text)


class RedactingFilter(logging.Filter):
    """Redacts tokens from a record's message and string arguments before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def install_log_redaction(names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error", "")) -> None:
    """Attach one `RedactingFilter` to each named logger (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


FRAME_HEADERS = ((b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"))


class FrameDenyMiddleware:
    """No page of ours may be framed by anyone (clickjacking): see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in FRAME_HEADERS if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
