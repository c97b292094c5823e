"""Transport-level limits: uvicorn protocol subclasses that bound what one socket can cost.

uvicorn parses requests and WebSocket frames before the app sees anything, so limits on *parsing*
must live here (docs/decisions/0001-where-limits-live.md):

- `GuardedHttpProtocol` (httptools): the request head (request line + headers) is measured on the raw
  bytes before the parser sees them — total size, longest line, number of lines — and a head that
  is not complete within `header_timeout_s` of the connection (or of the request's first byte on a
  kept-alive connection) is answered 408 and closed (slowloris). Open sockets per client address are
  capped at accept time, and WebSocket handshakes per client address (GM_WS_JOINS_PER_10S) are
  counted before the upgrade: one over the rate is answered 429 here, before the WebSocket
  protocol or the app run at all, so sockets opened and closed in a loop (spectator churn) cost
  the server a parsed request head each, not a handshake, an app call and a close. Every refusal
  is a JSON error (`{"error": {"code", "message"}}`) with `connection: close`; a malformed request
  gets the same shape instead of uvicorn's plain text.
- `GuardedWebSocketProtocol` (websockets sans-I/O): frames per message are capped (a flood of empty
  continuation frames never grows the message, so the size limit alone never fires), incoming data is
  parsed in slices so a cap is noticed after a bounded amount of work, a peer that keeps pinging
  while not reading our pongs is closed once our write buffer passes a cap, invalid UTF-8 text closes
  with 1007, and a handshake the websockets parser refuses gets a 400 instead of silence.

Each abusive connection is logged once (`stream.edge.transport` logger, WARNING), never per message.
The limits travel on `GuardedConfig` (a uvicorn.Config), so two servers in one process never share them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request

from stream.edge.limits import ConnectionLimiter, KeyedRateLimiter, TokenBucket, address_key
from stream.protocol.codes import (
    BAD_REQUEST,
    CLOSE_POLICY,
    HEADER_TIMEOUT,
    HEADER_TOO_LARGE,
    RATE_LIMITED,
    REQUEST_LINE_TOO_LONG,
    TOO_MANY_CONNECTIONS,
)
from stream.protocol.errors import error_json

log = logging.getLogger(__name__)

CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
_PARSE_SLICE = 4096  # WebSocket bytes parsed between two checks of the caps (~700 tiny frames at most)
_REPORT_EVERY_S = 10.0  # refusals of a whole address are logged at most this often
_FD_RESERVE = 64  # descriptors kept for log files, the model store, the pool's own work
LINGER_S = 1.0  # after a refusal, input is read and dropped this long so the answer is not lost


@dataclass(frozen=True)
class TransportLimits:
    max_head_bytes: int = 16 * 1024
    max_head_line_bytes: int = 8190  # websockets refuses longer handshake lines (8192 with CRLF)
    max_head_lines: int = 100  # websockets refuses more than 128 handshake headers
    header_timeout_s: float = 10.0
    max_sockets_per_ip: int = 128
    ws_max_fragments: int = 64
    ws_max_buffered_bytes: int = 1024 * 1024
    ws_max_pings_per_s: float = 5.0
    ws_joins_per_10s: int = 0  # WebSocket handshakes per client address (0: no limit) ...
    ws_join_burst: int = 20  # ... of which this many at once
    ws_joins_per_s: int = 0  # WebSocket handshakes over all addresses (0: no limit)
    trusted_proxies: frozenset[str] = frozenset()  # exempt from the socket cap ("*": everyone)

    @classmethod
    def from_settings(cls, settings: Any) -> TransportLimits:
        return cls(
            max_head_bytes=settings.max_header_bytes,
            max_head_line_bytes=settings.max_header_line_bytes,
            max_head_lines=settings.max_header_count,
            header_timeout_s=settings.header_timeout_s,
            max_sockets_per_ip=settings.max_sockets_per_ip,
            ws_max_fragments=settings.ws_max_fragments,
            ws_max_buffered_bytes=settings.ws_max_buffered_bytes,
            ws_max_pings_per_s=settings.ws_max_pings_per_s,
            ws_joins_per_10s=settings.ws_joins_per_10s,
            ws_join_burst=settings.ws_join_burst,
            ws_joins_per_s=settings.ws_joins_per_s,
            trusted_proxies=frozenset(
                part.strip() for part in (settings.forwarded_allow_ips or "").split(",") if part.strip()
            ),
        )


class TransportGuard:
    """Per-server state shared by every connection: open sockets and WebSocket handshakes per
    address, throttled reports."""

    def __init__(self, limits: TransportLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.sockets = ConnectionLimiter(limits.max_sockets_per_ip)
        self.handshakes = KeyedRateLimiter(limits.ws_joins_per_10s, 10.0, clock, burst=limits.ws_join_burst)
        total = limits.ws_joins_per_s
        # A join costs the event loop ~0.5 ms (handshake, app, welcome): a quarter second's worth at once.
        self.all_handshakes = TokenBucket(total, max(1, total // 4), clock) if total > 0 else None
        self._clock = clock
        self._reported: dict[str, float] = {}

    def admit_handshake(self, client: str) -> float | None:
        """None when `client` may open a WebSocket now, else seconds until it may try again."""
        if not self.handshakes.allow(client):
            return self.handshakes.retry_after(client)
        if self.all_handshakes is not None and not self.all_handshakes.allow():
            return self.all_handshakes.retry_after()
        return None

    def trusts(self, address: str) -> bool:
        trusted = self.limits.trusted_proxies
        return address in trusted or "*" in trusted

    def client_behind(self, peer: str, headers: list[tuple[bytes, bytes]]) -> str:
        """The client a trusted proxy speaks for: the nearest X-Forwarded-For entry that is not
        itself trusted (the address the app sees too); `peer` for anyone else."""
        if not self.trusts(peer):
            return peer
        forwarded = b",".join(value for name, value in headers if name == b"x-forwarded-for")
        hops = [hop.strip() for hop in forwarded.decode("latin-1").split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(address_key(hop)):
                return address_key(hop)
        return address_key(hops[0]) if hops else peer

    def report_address(self, key: str, message: str) -> None:
        """Log a refusal that concerns a whole address at most once per `_REPORT_EVERY_S`."""
        now = self._clock()
        if now - self._reported.get(key, -_REPORT_EVERY_S) < _REPORT_EVERY_S:
            return
        if len(self._reported) >= 1024:  # bounded: forgetting only means one more log line
            self._reported.clear()
        self._reported[key] = now
        log.warning("%s: %s", key, message)


class GuardedConfig(uvicorn.Config):
    """uvicorn.Config that carries the transport limits to the protocol instances."""

    def __init__(self, app: Any, *, transport_limits: TransportLimits, **options: Any) -> None:
        options.setdefault("http", GuardedHttpProtocol)
        options.setdefault("ws", GuardedWebSocketProtocol)
        super().__init__(app, **options)
        self.transport_guard = TransportGuard(transport_limits)


def _guard(config: Any) -> TransportGuard:
    guard = getattr(config, "transport_guard", None)
    if guard is None:  # a plain uvicorn.Config: default limits, private to this config
        guard = TransportGuard(TransportLimits())
        config.transport_guard = guard
    return guard


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise the soft open-file limit towards the hard one (a 1024 default is easily exhausted by
    idle sockets); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def default_limit_concurrency() -> int:
    """Connections uvicorn serves before answering 503: what the descriptor limit allows."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(64, soft - _FD_RESERVE)


def linger_close(transport: Any, loop: Any) -> None:
    """Close after a refusal without losing it: closing a socket that still has unread input makes
    the kernel send RST at once, which can destroy our answer before the peer has read it. So: send
    FIN after the answer, stop reading (no CPU is spent on whatever the peer still sends) and abort
    after `LINGER_S`, by when a well-behaved peer has read the answer."""
    if transport.is_closing():
        return
    if transport.can_write_eof():
        transport.write_eof()
        with contextlib.suppress(RuntimeError):  # reading already paused
            transport.pause_reading()
        loop.call_later(LINGER_S, transport.abort)
    else:
        transport.close()


def json_error_response(
    status: int, reason: str, code: str, message: str, extra_headers: str = ""
) -> bytes:
    body = error_json(code, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra_headers}connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class HeadMeter:
    """Measures a request head on the raw bytes: total size, longest line, number of lines.

    `feed(data)` returns None while the head is within limits (or complete), else (status, code,
    message). Work per call is bounded by `max_lines` line ends, whatever the chunk holds.
    """

    def __init__(self, limits: TransportLimits) -> None:
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        self.done = False
        self.size = 0
        self.lines = 0
        self._line = 0  # bytes of the current, unfinished line

    def feed(self, data: bytes) -> tuple[int, str, str] | None:
        if self.done:
            return None
        limits, pos, end = self.limits, 0, len(data)
        while pos < end:
            newline = data.find(b"\n", pos)
            stop = end if newline < 0 else newline
            self._line += stop - pos
            self.size += stop - pos + (newline >= 0)
            if self._line > limits.max_head_line_bytes:
                if self.lines == 0:
                    return 414, REQUEST_LINE_TOO_LONG, "the request line is too long"
                return 431, HEADER_TOO_LARGE, "a request header line is too long"
            if self.size > limits.max_head_bytes:
                return 431, HEADER_TOO_LARGE, f"request headers exceed {limits.max_head_bytes} bytes"
            if newline < 0:
                return None
            blank = self._line <= 1 and self.lines > 0  # "\r\n" alone: the end of the head
            self._line = 0
            self.lines += 1
            if blank:
                self.done = True
                return None
            if self.lines > limits.max_head_lines:
                return 431, HEADER_TOO_LARGE, f"more than {limits.max_head_lines} request headers"
            pos = newline + 1
        return None


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    414: "URI Too Long",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class GuardedHttpProtocol(HttpToolsProtocol):
    """httptools protocol with head size/time limits, a per-address socket cap and JSON errors."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.guard = _guard(config)
        self.meter = HeadMeter(self.guard.limits)
        self.address = "unknown"
        self._holds_socket = False
        self._head_timer: Any = None
        self._refused = False

    # --- connection ---------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.address = address_key(self.client[0] if self.client else None)
        if self.guard.trusts(self.address):
            self._arm_head_timer()  # a proxy's sockets carry many clients: no per-address cap
            return
        if not self.guard.sockets.acquire(self.address):
            self.guard.report_address(
                self.address, f"more than {self.guard.limits.max_sockets_per_ip} open sockets; refusing more"
            )
            # No lingering here: under a socket flood the descriptor is worth more than the answer.
            message = "too many open sockets from this address"
            self._refuse(503, TOO_MANY_CONNECTIONS, message, log_it=False, linger=False)
            return
        self._holds_socket = True
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._release_socket()
        super().connection_lost(exc)

    def _release_socket(self) -> None:
        if self._holds_socket:
            self._holds_socket = False
            self.guard.sockets.release(self.address)

    # --- request head -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        problem = self.meter.feed(data)
        if problem is not None:
            self._refuse(*problem)
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()  # from the request's first byte (on a kept-alive connection too)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.meter.reset()  # whatever follows is the next request's head

    def on_headers_complete(self) -> None:
        self.meter.done = True
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        timeout = self.guard.limits.header_timeout_s
        if timeout > 0:
            self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.meter.done and not self.transport.is_closing():
            timeout = self.guard.limits.header_timeout_s
            self._refuse(408, HEADER_TIMEOUT, f"request headers not received within {timeout:g} s")

    # --- websocket hand-over ----------------------------------------------------------------------
    def handle_websocket_upgrade(self) -> None:
        client = self.guard.client_behind(self.address, self.scope["headers"])
        wait_s = self.guard.admit_handshake(client)
        if wait_s is not None:
            self.guard.report_address(client, "too many WebSocket handshakes; answering 429")
            retry = max(1, math.ceil(wait_s))
            message = "too many connections opened from this address: wait a moment"
            # The whole request is in (a handshake has no body): nothing left to linger for.
            retry_header = f"retry-after: {retry}\r\n"
            self._refuse(429, RATE_LIMITED, message, log_it=False, linger=False, extra_headers=retry_header)
            return
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if isinstance(protocol, GuardedWebSocketProtocol) and self._holds_socket:
            # The socket now belongs to the WebSocket protocol: it releases the address slot.
            self._holds_socket = False
            protocol.adopt_socket_slot(self.address)

    # --- refusals ------------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:  # a request httptools cannot parse
        self._refuse(400, BAD_REQUEST, "invalid HTTP request")

    def _refuse(
        self,
        status: int,
        code: str,
        message: str,
        *,
        log_it: bool = True,
        linger: bool = True,
        extra_headers: str = "",
    ) -> None:
        if self._refused:
            return
        self._refused = True
        self._cancel_head_timer()
        if log_it:
            log.warning("%s: HTTP %d %s (%s); connection closed", self.address, status, code, message)
        if not self.transport.is_closing():
            self.transport.write(json_error_response(status, _REASONS[status], code, message, extra_headers))
            if linger:
                linger_close(self.transport, self.loop)
            else:
                self.transport.close()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """websockets sans-I/O protocol with caps on fragments, unread control replies and bad text."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.guard = _guard(config)
        self.address = "unknown"
        self._slot: str | None = None
        self._fragments = 0
        self._failed = False
        rate = self.guard.limits.ws_max_pings_per_s
        # Browsers never ping; libraries ping every ~20 s. A burst of 20 leaves room for both.
        self._pings = TokenBucket(rate, max(20.0, 2 * rate)) if rate > 0 else None

    def adopt_socket_slot(self, address: str) -> None:
        self.address = address
        self._slot = address

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.address = address_key(self.client[0] if self.client else None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._slot is not None:
            self.guard.sockets.release(self._slot)
            self._slot = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Parse in slices: a burst of tiny frames hits the fragment cap after bounded work, not
        # after the whole read buffer has been turned into frame objects.
        for start in range(0, len(data), _PARSE_SLICE):
            if self._failed or self.transport.is_closing():
                return
            self.conn.receive_data(data[start : start + _PARSE_SLICE])
            if self.conn.parser_exc is not None:  # websockets has failed the connection already
                self._closed_by_parser()
                return
            if not self.handshake_initiated and self.conn.handshake_exc is not None:
                self._refuse_handshake()
                return
            self.handle_events()

    def handle_events(self) -> None:
        for event in self.conn.events_received():
            if self._failed:
                return
            if isinstance(event, Request):
                self.handle_connect(event)
                continue
            assert isinstance(event, Frame)
            if event.opcode in (Opcode.CONT, Opcode.TEXT, Opcode.BINARY):
                self._on_data(event)
            elif event.opcode is Opcode.PING:
                self._on_ping(event)
            elif event.opcode is Opcode.PONG:
                self.handle_pong(event)
            elif event.opcode is Opcode.CLOSE:
                self.handle_close(event)

    def _on_data(self, event: Frame) -> None:
        if event.opcode is Opcode.CONT:
            self._fragments += 1
            if self._fragments > self.guard.limits.ws_max_fragments:
                limit = self.guard.limits.ws_max_fragments
                self._fail(CLOSE_TOO_BIG, f"more than {limit} frames in one message")
                return
            self.handle_cont(event)
        else:
            self._fragments = 1
            if event.opcode is Opcode.TEXT:
                self.handle_text(event)
            else:
                self.handle_bytes(event)

    def _on_ping(self, event: Frame) -> None:
        # websockets has queued the pong already; a peer that never reads them must not make us
        # buffer every one: past the cap it is closed instead. A ping flood costs parse time and
        # pong bytes even when read, so pings are rate-limited too.
        if self.transport.get_write_buffer_size() > self.guard.limits.ws_max_buffered_bytes:
            self._fail(CLOSE_POLICY, "pings sent while our replies are not read")
            return
        if self._pings is not None and not self._pings.allow():
            self._fail(CLOSE_POLICY, f"more than {self.guard.limits.ws_max_pings_per_s:g} pings/s")
            return
        self.handle_ping()

    def send_receive_event_to_app(self) -> None:
        # uvicorn would log a traceback per invalid message; one warning and close 1007 instead.
        if self.curr_msg_data_type == "text" and not self.close_sent:
            joined = b"".join(self.frames)
            try:
                joined.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "text message is not valid UTF-8")
                return
            self.frames = [joined]
        super().send_receive_event_to_app()

    # --- closing ---------------------------------------------------------------------------------
    def _report(self, message: str) -> None:
        log.warning("%s: %s; WebSocket closed", self.address, message)

    def _fail(self, code: int, reason: str) -> None:
        """Close the connection at once with `code` (logged once); the app sees a disconnect."""
        if self._failed:
            return
        self._failed = True
        self.frames = []
        self._report(f"{reason} (close {code})")
        self.conn.fail(code, reason)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        linger_close(self.transport, self.loop)

    def _closed_by_parser(self) -> None:
        self._failed = True
        self.frames = []
        close = self.conn.close_sent
        code, reason = (close.code, close.reason) if close is not None else (1006, "")
        self._report(f"{self.conn.parser_exc} (close {code})")
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        linger_close(self.transport, self.loop)

    def _refuse_handshake(self) -> None:
        self._failed = True
        self._report(f"invalid WebSocket handshake ({self.conn.handshake_exc})")
        self.handshake_complete = True
        self.close_sent = True
        response = json_error_response(400, _REASONS[400], BAD_REQUEST, "invalid WebSocket handshake")
        self.transport.write(response)
        linger_close(self.transport, self.loop)
