"""A session's store-then-deliver pipeline (see stream.durability.service for the whole picture).

`SessionJournal` turns the session's synchronous broadcasts into an ordered pipeline: write the
newest state to the store (one write per state change, never per frame), then deliver it to the
local player/spectators and - on a shared store, atomically with the write - publish it to the
session's channel. A player is therefore never sent a state the store does not hold. While the
store is unreachable the pending write is retried with backoff and `paused` is true.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stream.protocol import StateSnapshot
from stream.store import OwnershipLost, StoreUnavailable

if TYPE_CHECKING:
    from stream.durability.service import Durability
    from stream.sessions.registry import Session

log = logging.getLogger(__name__)

_MAX_PENDING = 256  # journal items before intermediate states are collapsed (store outage)
_RETRY_S = (0.1, 1.0)  # backoff of a journal's write while the store is unreachable


@dataclass(slots=True)
class _State:
    snapshot: StateSnapshot


@dataclass(slots=True)
class _Message:
    payload: dict[str, Any]
    text: str
    spectators_only: bool


def state_event(snapshot: StateSnapshot) -> dict[str, Any]:
    """A state on the channel; the maze only travels with the first state of a new maze."""
    return {
        "k": "s", "v": snapshot.version, "mv": snapshot.maze_version, "mc": snapshot.maze_changed,
        "b": snapshot.body, "m": snapshot.maze if snapshot.maze_changed else None,
    }


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


class SessionJournal:
    """Store-then-deliver pipeline of one session; every mutation of the session queues here."""

    def __init__(self, session: Session, durability: Durability) -> None:
        self.session = session
        self.durability = durability
        self.stalled = False  # the last write attempt failed: waiting for the store
        self._items: deque[_State | _Message] = deque()
        self._task: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        return self.stalled or not self.durability.store.up

    def state(self, snapshot: StateSnapshot) -> None:
        self._items.append(_State(snapshot))
        self._kick()

    def message(self, payload: dict[str, Any], text: str, spectators_only: bool) -> None:
        self._items.append(_Message(payload, text, spectators_only))
        self._kick()

    def _kick(self) -> None:
        if len(self._items) > _MAX_PENDING:
            self._collapse()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="journal")

    def _collapse(self) -> None:
        # Only during a store outage: keep the newest state and the messages that matter (`won`);
        # connections resync their maze from the newest state by maze_version (stream.edge.connection).
        newest = next((i for i in reversed(self._items) if isinstance(i, _State)), None)
        kept = [i for i in self._items if isinstance(i, _Message) and i.payload.get("type") == "won"]
        self._items = deque([*kept[-8:], *([newest] if newest is not None else [])])

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def _next_batch(self) -> list[_State | _Message]:
        # Up to and including the next state: one store write per state change, and the sender
        # tasks run between states, so a burst reaches each outbox at the pace it is stored.
        batch: list[_State | _Message] = []
        while self._items:
            item = self._items.popleft()
            batch.append(item)
            if isinstance(item, _State):
                break
        return batch

    async def _drain(self) -> None:
        while self._items:
            batch = self._next_batch()
            try:
                await self._store(batch)
            except OwnershipLost:
                self._items.clear()
                await self.durability.lost(self.session)
                return
            if self.session.closed and self.stalled:
                return  # shutting down while the store is away: these were never acknowledged
            for item in batch:
                if isinstance(item, _State):
                    self.session.deliver_state(item.snapshot)
                else:
                    self.session.deliver_encoded(item.payload["type"], item.text, item.spectators_only)

    async def _store(self, batch: list[_State | _Message]) -> None:
        durability = self.durability
        event: bytes | None = None
        if durability.store.shared:
            items = [
                state_event(i.snapshot) if isinstance(i, _State) else {"k": "m", "p": i.payload}
                for i in batch
            ]
            event = encode_event({"k": "b", "i": items})
        if not any(isinstance(i, _State) for i in batch):
            if event is not None:  # notices only: best effort, like any pub/sub message
                with contextlib.suppress(StoreUnavailable):
                    await durability.store.publish(self.session.id, event)
            return
        delay = _RETRY_S[0]
        while True:
            try:
                await durability.save(self.session, event)
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
