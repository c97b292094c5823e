"""Host allow-list: the defence against DNS rebinding.

A page on `evil.example` can re-point its own name at 127.0.0.1; the browser then sends requests (and
WebSocket handshakes) to the local server with `Host: evil.example` and a matching `Origin`, so a
same-origin check that trusts Host alone would let it in. Checking Host against the names this
server is known by closes that door: a rebinding attack always carries the attacker's name.

API:
- `allowed_host_names(bound_host, extra) -> frozenset[str]`: "localhost" and the bound host (when it
  is a name, not a wildcard address), plus `extra` (GM_ALLOWED_HOSTS), lower-cased. `"*"` in `extra`
  allows any Host.
- `host_allowed(host_header, names) -> bool`: True for a Host naming an IP literal (a literal cannot be
  rebound: the page's origin would have to be that IP), for `*.localhost` and `localhost` (browsers
  resolve them to loopback themselves), and for a name in `names`; the port is ignored. A missing
  Host (HTTP/1.0) is allowed: browsers always send one.
- `HostGuardMiddleware(app, names, on_reject=None)`: pure ASGI. HTTP requests and WebSocket handshakes
  with a refused Host get 400 `{"error": {"code": "host_not_allowed", ...}}`; `on_reject(kind)` counts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from stream.protocol.codes import CLOSE_POLICY, HOST_NOT_ALLOWED
from stream.protocol.errors import send_error_response

_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def allowed_host_names(bound_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    names = {"localhost"}
    bound = bound_host.strip().lower()
    if bound not in _WILDCARD_BINDS:
        names.add(bound.strip("[]"))
    names.update(name.strip().lower().rstrip(".") for name in extra if name.strip())
    return frozenset(names)


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host_header: str | None, names: frozenset[str]) -> bool:
    if host_header is None:
        return True
    if "*" in names:
        return True
    name = _host_name(host_header)
    if not name:
        return False
    return name in names or name.endswith(".localhost") or _is_ip_literal(name)


def _host_header(scope: MutableMapping[str, Any]) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"host":
            return value.decode("latin-1")
    return None


class HostGuardMiddleware:
    def __init__(
        self, app: Any, names: frozenset[str], on_reject: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.names = names
        self.on_reject = on_reject

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or host_allowed(_host_header(scope), self.names):
            await self.app(scope, receive, send)
            return
        if self.on_reject is not None:
            self.on_reject(kind)
        message = "this server does not answer to that Host name"
        if kind == "http":
            await send_error_response(send, 400, HOST_NOT_ALLOWED, message)
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send_error_response(send, 400, HOST_NOT_ALLOWED, message, websocket=True)
        else:
            await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": HOST_NOT_ALLOWED})
