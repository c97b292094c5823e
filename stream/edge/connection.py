"""One WebSocket connection: a bounded outbox drained by a single sender task.

Game code never awaits a socket: it calls `send_state()` / `send()` which only enqueue, so a slow
client can never slow the session or other clients down. The sender task is the only writer of the
socket. Overflow policy (docs/protocol.md): when the outbox is full, every queued message that a
newer state makes obsolete (state, frame, gesture, pong) is discarded and ONE full state (with maze)
is queued so the client resyncs; `welcome`, `won` and `error` are kept. A single send that blocks for
longer than `send_timeout_s` closes the socket with 4001 "too slow".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from stream.protocol.codes import CLOSE_TOO_SLOW
from stream.protocol.server import ErrorMessage, StateSnapshot, encode

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT_S = 2.0  # a close frame that cannot be written in this long is abandoned
_KEPT_ON_OVERFLOW = frozenset({"welcome", "won", "error"})


class Socket(Protocol):
    """What the connection needs from Starlette's WebSocket (a fake in unit tests)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class ConnectionState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # a close is queued behind the remaining messages
    CLOSED = "closed"


@dataclass(slots=True)
class _Item:
    kind: str  # message "type", or "close"
    text: str = ""
    close_code: int = 0
    close_reason: str = ""


class Connection:
    """Outbox + sender for one socket. `role` is "player" or "spectator" (metrics label)."""

    def __init__(
        self,
        socket: Socket,
        role: str,
        *,
        queue_size: int,
        send_timeout_s: float,
        on_drop: Callable[[int], None] | None = None,
        latest_state: Callable[[], StateSnapshot | None] | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.socket = socket
        self.role = role
        self.state = ConnectionState.OPEN
        self.close_code: int | None = None
        self.dropped_messages = 0
        self.resyncs = 0
        self._queue: deque[_Item] = deque()
        self._queue_size = queue_size
        self._send_timeout_s = send_timeout_s
        self._on_drop = on_drop
        self._latest_state = latest_state
        self._maze_seen: int | None = None  # maze_version of the last state queued with its maze
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()

    # --- enqueue (never blocks) ----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.OPEN

    @property
    def queued(self) -> int:
        return len(self._queue)

    def send(self, message: Any) -> None:
        """Queue a non-state server message (dataclass with to_dict, or dict)."""
        payload = message if isinstance(message, dict) else message.to_dict()
        self.send_encoded(payload["type"], encode(payload))

    def send_encoded(self, kind: str, text: str) -> None:
        """Queue a message already encoded once for many connections (a broadcast)."""
        self._put(_Item(kind, text))

    def send_error(self, code: str, message: str) -> None:
        self.send(ErrorMessage(code, message))

    def send_state(self, snapshot: StateSnapshot) -> None:
        if not self.is_open:
            return
        if len(self._queue) >= self._queue_size:
            self._overflow(snapshot)
            return
        self._queue.append(_Item("state", self._state_text(snapshot)))
        self._wakeup.set()

    def close(self, code: int, reason: str = "") -> None:
        """Close after the messages already queued (e.g. an error explaining why) are sent."""
        if not self.is_open:
            return
        self.state = ConnectionState.CLOSING
        self._queue.append(_Item("close", close_code=code, close_reason=reason))
        self._wakeup.set()

    def _state_text(self, snapshot: StateSnapshot) -> str:
        with_maze = snapshot.maze_changed or self._maze_seen != snapshot.maze_version
        self._maze_seen = snapshot.maze_version
        return snapshot.text(with_maze)

    def _put(self, item: _Item) -> None:
        if not self.is_open:
            return
        if len(self._queue) >= self._queue_size:
            latest = self._latest_state() if self._latest_state else None
            self._overflow(latest)
            if len(self._queue) >= self._queue_size:  # only kept messages queued: drop the oldest
                self._queue.popleft()
                self._count_drops(1)
        self._queue.append(item)
        self._wakeup.set()

    def _overflow(self, snapshot: StateSnapshot | None) -> None:
        kept = deque(item for item in self._queue if item.kind in _KEPT_ON_OVERFLOW)
        self._count_drops(len(self._queue) - len(kept))
        self._queue = kept
        self.resyncs += 1
        if snapshot is not None:
            self._maze_seen = snapshot.maze_version
            self._queue.append(_Item("state", snapshot.text(with_maze=True)))
        self._wakeup.set()

    def _count_drops(self, count: int) -> None:
        if count <= 0:
            return
        self.dropped_messages += count
        if self._on_drop is not None:
            self._on_drop(count)

    # --- the sender task -----------------------------------------------------------------------
    async def run_sender(self) -> None:
        """Send queued messages in order until a close is sent or the socket fails."""
        try:
            while True:
                while not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                item = self._queue.popleft()
                if item.kind == "close":
                    await self._close_socket(item.close_code, item.close_reason)
                    return
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                    # races with completion, which would leave this task impossible to stop.
                    async with asyncio.timeout(self._send_timeout_s):
                        await self.socket.send_text(item.text)
                except TimeoutError:
                    log.info(
                        "closing a %s connection: a send blocked for %.1fs", self.role, self._send_timeout_s
                    )
                    self.state = ConnectionState.CLOSING
                    await self._close_socket(CLOSE_TOO_SLOW, "too slow")
                    return
        except Exception as exc:  # the peer vanished mid-send: nothing left to do for this socket
            log.debug("%s sender stopped: %r", self.role, exc)
        finally:
            self._mark_closed()

    async def _close_socket(self, code: int, reason: str) -> None:
        self.close_code = code
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self.socket.close(code, reason)

    def _mark_closed(self) -> None:
        self.state = ConnectionState.CLOSED
        self._queue.clear()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve(self, receiver: Awaitable[None]) -> None:
        """Run the sender next to `receiver` (the handler's read loop) until either ends."""
        sender = asyncio.ensure_future(self.run_sender())
        reader = asyncio.ensure_future(receiver)
        try:
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and sender not in done and self.state is ConnectionState.CLOSING:
                # The reader stopped because we are closing: let the close (and what precedes it) go out.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                        await asyncio.shield(sender)
        finally:
            for task in (sender, reader):
                task.cancel()
            await asyncio.gather(sender, reader, return_exceptions=True)
            self._mark_closed()
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                exc = reader.exception()
                if not isinstance(exc, asyncio.CancelledError):
                    raise exc
