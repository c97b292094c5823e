"""A session's store-then-deliver publisher (see stream.durability.service for the whole picture).

`SessionJournal` is the `Publisher` (stream.sessions.publisher) of a durable session: it writes the
newest state to the store (one write per state change, never per frame), then delivers it to the
local audience and - on a shared store, atomically with the write - publishes it to the session's
channel. A player is therefore never sent a state the store does not hold. While the store is
unreachable the pending write is retried with backoff and `paused` is true.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from stream.protocol.events import Batch, NoticeItem, StateItem, encode_event
from stream.protocol.server import StateSnapshot
from stream.sessions.session import Session
from stream.store import OwnershipLost, StoreUnavailable

log = logging.getLogger(__name__)

_MAX_PENDING = 256  # journal items before intermediate states are collapsed (store outage)
_KEPT_MOVES = 64  # move confirmations a collapse keeps (moves are rate limited per player)
_RETRY_S = (0.1, 1.0)  # backoff of a journal's write while the store is unreachable


class JournalBackend(Protocol):
    """What a journal needs from the durability service (stream.durability.service.Durability)."""

    @property
    def shared(self) -> bool: ...

    @property
    def store_up(self) -> bool: ...

    async def save(self, session: Session, event: bytes | None = None) -> None: ...

    async def publish(self, session_id: str, event: bytes) -> None: ...

    async def lost(self, session: Session) -> None: ...


@dataclass(slots=True)
class _State:
    snapshot: StateSnapshot


@dataclass(slots=True)
class _Notice:
    payload: dict[str, Any]
    text: str
    spectators_only: bool


@dataclass(slots=True)
class _Then:
    action: Callable[[], None]


_Item = _State | _Notice | _Then


class SessionJournal:
    """Store-then-deliver pipeline of one session; every change of the session queues here."""

    def __init__(self, session: Session, backend: JournalBackend) -> None:
        self.session = session
        self.backend = backend
        self.stalled = False  # the last write attempt failed: waiting for the store
        self._items: deque[_Item] = deque()
        self._task: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        return self.stalled or not self.backend.store_up

    def state(self, snapshot: StateSnapshot) -> None:
        self._queue(_State(snapshot))

    def notice(self, payload: dict[str, Any], text: str, spectators_only: bool) -> None:
        self._queue(_Notice(payload, text, spectators_only))

    def then(self, action: Callable[[], None]) -> None:
        self._queue(_Then(action))

    def _queue(self, item: _Item) -> None:
        self._items.append(item)
        if len(self._items) > _MAX_PENDING:
            self._collapse()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="journal")

    def _collapse(self) -> None:
        # When the store falls behind (an outage): drop the intermediate states nobody asked for
        # (presence, spectator notices) but never the player's own replies - the states that
        # confirm a move (`last_move`), `won`, and replies waiting for delivery - nor the newest
        # state; order is kept. Connections resync their maze by maze_version (stream.edge.connection).
        items = list(self._items)
        newest = next((i for i in reversed(items) if isinstance(i, _State)), None)
        moves = [i for i in items if isinstance(i, _State) and "last_move" in i.snapshot.body][-_KEPT_MOVES:]
        won = [i for i in items if isinstance(i, _Notice) and i.payload.get("type") == "won"][-8:]
        kept = {id(i) for i in (*moves, *won)} | ({id(newest)} if newest is not None else set())
        self._items = deque(i for i in items if isinstance(i, _Then) or id(i) in kept)

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def _next_batch(self) -> list[_Item]:
        # Up to and including the next state: one store write per state change, and the sender
        # tasks run between states, so a burst reaches each outbox at the pace it is stored.
        batch: list[_Item] = []
        while self._items:
            item = self._items.popleft()
            batch.append(item)
            if isinstance(item, _State):
                break
        return batch

    async def _drain(self) -> None:
        audience = self.session.audience
        while self._items:
            batch = self._next_batch()
            try:
                await self._store(batch)
            except OwnershipLost:
                self._items.clear()
                await self.backend.lost(self.session)
                return
            if self.session.closed and self.stalled:
                return  # shutting down while the store is away: these were never acknowledged
            for item in batch:
                if isinstance(item, _State):
                    audience.deliver_state(item.snapshot)
                elif isinstance(item, _Notice):
                    audience.deliver_encoded(item.payload["type"], item.text, item.spectators_only)
                else:
                    item.action()

    async def _store(self, batch: list[_Item]) -> None:
        backend = self.backend
        event: bytes | None = None
        if backend.shared:
            items = tuple(
                StateItem.of(i.snapshot) if isinstance(i, _State) else NoticeItem(i.payload)
                for i in batch if not isinstance(i, _Then)
            )
            event = encode_event(Batch(items)) if items else None
        if not any(isinstance(i, _State) for i in batch):
            if event is not None:  # notices only: best effort, like any pub/sub message
                with contextlib.suppress(StoreUnavailable):
                    await backend.publish(self.session.id, event)
            return
        delay = _RETRY_S[0]
        while True:
            try:
                await backend.save(self.session, event)
                self.stalled = False
                return
            except StoreUnavailable:
                self.stalled = True
            except OwnershipLost:
                raise
            except Exception:  # a bug or an unexpected backend reply: keep the state, retry, tell
                log.exception("storing session %s failed", self.session.id)
                self.stalled = True
            if self.session.closed:
                return
            await asyncio.sleep(delay)
            delay = min(_RETRY_S[1], delay * 2)
