"""Spectators on a shared store: each instance follows a watched session's channel and relays its
events to its own spectators, whichever instance runs the game.

One `RemoteWatch` per watched session and instance. States arrive with strictly increasing versions;
an old or repeated one is skipped; after a gap (pub/sub is at-most-once, a resubscription, a state
whose maze we do not hold) the spectators get a resync state WITH the maze, read from the store.
Delivery only queues into each connection's bounded outbox (stream.edge.connection), so a slow spectator
never holds up the channel, and the channel reader never waits on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from stream.edge.connection import Connection
from stream.metrics import Metrics
from stream.protocol.codes import CLOSE_GOING_AWAY
from stream.protocol.events import (
    Batch,
    Claimed,
    Closed,
    Event,
    NoticeItem,
    StateItem,
    Watchers,
    encode_event,
)
from stream.protocol.server import StateSnapshot, encode
from stream.store import SessionRecord, StoreUnavailable

log = logging.getLogger(__name__)

_ANNOUNCE_INTERVAL_S = 0.25
_SETTLE_S = 0.5


def snapshot_of_record(record: SessionRecord) -> StateSnapshot:
    game = record.game
    return StateSnapshot(record.version, int(game["maze_version"]), True, dict(record.state), game["maze"])


class RelayBackend(Protocol):
    """What the relay needs from the durability service (stream.durability.service.Durability)."""

    instance_id: str
    metrics: Metrics

    async def load(self, session_id: str) -> SessionRecord | None: ...

    async def publish(self, session_id: str, event: bytes) -> None: ...

    def follow(self, session_id: str) -> None:
        """Subscribe to the session's channel."""
        ...

    def unfollow(self, session_id: str) -> None: ...


class RemoteWatch:
    def __init__(self, session_id: str, hub: WatchHub) -> None:
        self.session_id = session_id
        self.hub = hub
        self.conns: set[Connection] = set()
        self.joining = 0
        self.version = 0
        self.maze_version: int | None = None
        self.maze: dict[str, Any] | None = None
        self.latest: StateSnapshot | None = None
        self.announce_due = False
        self._resync: asyncio.Task[None] | None = None

    def latest_state(self) -> StateSnapshot | None:
        return self.latest

    def _deliver(self, snapshot: StateSnapshot) -> None:
        self.latest = snapshot
        self.version = snapshot.version
        self.maze_version, self.maze = snapshot.maze_version, snapshot.maze
        for conn in self.conns:
            conn.send_state(snapshot)

    def on_batch(self, batch: Batch) -> None:
        for item in batch.items:
            if isinstance(item, StateItem):
                self._on_state(item)
            elif isinstance(item, NoticeItem):
                text = encode(item.payload)
                for conn in self.conns:
                    conn.send_encoded(str(item.payload["type"]), text)

    def _on_state(self, item: StateItem) -> None:
        if item.version <= self.version:
            return  # already delivered (or older than a resync)
        maze = item.maze or (self.maze if item.maze_version == self.maze_version else None)
        if maze is None:
            self.hub.metrics.spectator_resyncs.inc()
            self.schedule_resync()  # a state of a maze we never got: read it from the store
            return
        gap = self.version != 0 and item.version != self.version + 1
        if gap:
            self.hub.metrics.spectator_resyncs.inc()
        # After a gap the state goes out with its maze (maze_changed=True): a full resync.
        changed = item.maze_changed or gap
        self._deliver(StateSnapshot(item.version, item.maze_version, changed, item.body, maze))

    def schedule_resync(self) -> None:
        if self._resync is None or self._resync.done():
            self._resync = asyncio.get_running_loop().create_task(self.resync(), name="watch-resync")

    async def resync(self) -> bool:
        """Deliver the stored state if it is newer than what the spectators have; False if gone."""
        try:
            record = await self.hub.backend.load(self.session_id)
        except StoreUnavailable:
            return True  # retried after the bus resubscribes
        if record is None:
            return False
        if record.version > self.version:
            self._deliver(snapshot_of_record(record))
        return True

    def close(self, code: int, reason: str) -> None:
        for conn in list(self.conns):
            conn.close(code, reason)
        if self._resync is not None:
            self._resync.cancel()


class WatchHub:
    """Every session this instance relays to its spectators."""

    def __init__(self, backend: RelayBackend) -> None:
        self.backend = backend
        self.metrics = backend.metrics
        self.watches: dict[str, RemoteWatch] = {}

    def spectators(self, session_id: str) -> int:
        watch = self.watches.get(session_id)
        return len(watch.conns) + watch.joining if watch is not None else 0

    def reserve(self, session_id: str) -> RemoteWatch:
        watch = self.watches.get(session_id)
        if watch is None:
            watch = self.watches[session_id] = RemoteWatch(session_id, self)
            self.backend.follow(session_id)
        watch.joining += 1
        return watch

    async def join(self, watch: RemoteWatch, conn: Connection) -> bool:
        """Add a spectator (reserved with `reserve`) and send it the current state; False if gone."""
        watch.joining -= 1
        if watch.latest is None:
            if not await watch.resync():
                self._maybe_drop(watch)
                return False
            # The channel subscription is confirmed asynchronously: a state published between our
            # read and the subscription would be missed until the next one. Read once more.
            asyncio.get_running_loop().call_later(_SETTLE_S, watch.schedule_resync)
        watch.conns.add(conn)
        if watch.latest is not None:
            conn.send_state(watch.latest)
        self._announce(watch)
        return True

    def unreserve(self, watch: RemoteWatch) -> None:
        watch.joining -= 1
        self._maybe_drop(watch)

    def leave(self, watch: RemoteWatch, conn: Connection) -> None:
        if conn in watch.conns:
            watch.conns.discard(conn)
            self._announce(watch)
        self._maybe_drop(watch)

    def _maybe_drop(self, watch: RemoteWatch) -> None:
        if watch.conns or watch.joining or self.watches.get(watch.session_id) is not watch:
            return
        del self.watches[watch.session_id]
        self.backend.unfollow(watch.session_id)

    def _announce(self, watch: RemoteWatch) -> None:
        """Tell the instance running the game how many watch through us (the `spectators` count).

        Coalesced: a crowd joining at once sends one count per interval, not one state per spectator
        to every spectator."""
        if watch.announce_due:
            return
        watch.announce_due = True
        asyncio.get_running_loop().call_later(_ANNOUNCE_INTERVAL_S, self._send_count, watch)

    def _send_count(self, watch: RemoteWatch) -> None:
        watch.announce_due = False
        event = encode_event(Watchers(self.backend.instance_id, len(watch.conns)))
        task = asyncio.ensure_future(self.backend.publish(watch.session_id, event))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def on_event(self, session_id: str, event: Event) -> None:
        watch = self.watches.get(session_id)
        if watch is None:
            return
        if isinstance(event, Batch):
            watch.on_batch(event)
        elif isinstance(event, Closed):
            watch.close(CLOSE_GOING_AWAY, event.reason)
        elif isinstance(event, Claimed):
            self._announce(watch)  # a new instance runs the game: tell it our spectators

    def resync_all(self) -> None:
        for watch in list(self.watches.values()):
            watch.schedule_resync()
            self._announce(watch)

    def close_all(self) -> None:
        for watch in list(self.watches.values()):
            with contextlib.suppress(Exception):
                watch.close(CLOSE_GOING_AWAY, "server shutting down")
