"""Durable sessions: every state is stored before anyone is told about it, and any instance can
continue a session from the store.

- `stream.durability.journal.SessionJournal` (one per session, its `Publisher`): each state is
  written to the store (one write per state change, never per frame), then delivered locally and -
  on a shared store, atomically with the write - published for spectators on other instances. A
  player is therefore never sent a state the store does not hold: nothing a player was told is lost.
- `Durability` (one per app, owned by the lifespan) restores sessions from the store (after a
  restart, or when a player moves to this instance), claims the player lease, keeps leases and TTLs
  fresh, follows the store's reachability (`/health`, metrics) and routes channel events
  (stream.protocol.events) to the sessions it runs and to the relay of remote spectators
  (stream.durability.relay.WatchHub).

While the store is unreachable the journal keeps retrying the pending write and `Session.paused`
makes the play handler refuse new changes with `store_unavailable` (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from typing import Any

from stream.durability.journal import SessionJournal
from stream.durability.lobby import Lobby
from stream.durability.relay import WatchHub
from stream.edge.security import tokens_equal
from stream.metrics import Metrics
from stream.protocol.codes import CLOSE_REPLACED
from stream.protocol.events import Claimed, EventError, Watchers, decode_event, encode_event
from stream.sessions.registry import SessionRegistry
from stream.sessions.session import Session
from stream.store import Bus, OwnershipLost, SessionRecord, Store, StoreUnavailable, token_hash

log = logging.getLogger(__name__)

_FLUSH_TIMEOUT_S = 3.0


def new_instance_id() -> str:
    return f"{socket.gethostname()[:20]}-{os.getpid()}-{secrets.token_hex(3)}"


class Durability:
    """The app's link to its store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        registry: SessionRegistry,
        metrics: Metrics,
        *,
        grace_s: float,
        lease_s: float,
        instance_id: str | None = None,
        lobby_ttl_s: float = 1.0,
        lobby_max: int = 1000,
    ) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.grace_s = grace_s
        self.lease_s = lease_s
        self.instance_id = instance_id or new_instance_id()
        self.journals: set[SessionJournal] = set()
        self.hub: WatchHub | None = None
        self.bus: Bus | None = None
        self._restoring: dict[str, asyncio.Future[Session | None]] = {}
        self._remote_counts: dict[str, dict[str, int]] = {}  # session -> instance -> spectators
        self._tasks: list[asyncio.Task[None]] = []
        self.lobby = Lobby(self.public_summaries, ttl_s=lobby_ttl_s, max_listed=lobby_max)
        registry.on_admit = self._on_admit
        registry.on_reaped = self.forget
        store.on_up_change = self._on_up_change
        metrics.store_up.labels(backend=store.backend).set(1)

    @property
    def shared(self) -> bool:
        return self.store.shared

    @property
    def store_up(self) -> bool:
        return self.store.up

    async def publish(self, session_id: str, event: bytes) -> None:
        await self.store.publish(session_id, event)

    def follow(self, session_id: str) -> None:
        if self.bus is not None:
            self.bus.subscribe(session_id)

    def unfollow(self, session_id: str) -> None:
        if self.bus is not None:
            self.bus.unsubscribe(session_id)

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.start()
        if self.store.shared:
            self.hub = WatchHub(self)
            self.bus = self.store.bus(self.instance_id, self._on_event, self._on_resubscribed)
            self._spawn(self.bus.run(), "store-bus")
        self._spawn(self._keep_alive(), "store-keepalive")

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    async def close(self) -> None:
        """After the registry closed: let pending writes finish (bounded), then disconnect."""
        pending = [j.flush() for j in self.journals]
        if pending:
            await asyncio.wait([asyncio.ensure_future(p) for p in pending], timeout=_FLUSH_TIMEOUT_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.hub is not None:
            self.hub.close_all()
        await self.store.close()

    def relayed_connections(self) -> list[Any]:
        return [conn for watch in self.hub.watches.values() for conn in watch.conns] if self.hub else []

    def close_relays(self) -> None:
        if self.hub is not None:
            self.hub.close_all()

    def health(self) -> dict[str, Any]:
        store = self.store
        info: dict[str, Any] = {"backend": store.backend, "shared": store.shared, "up": store.up}
        if self.bus is not None:
            info["events"] = "subscribed" if self.bus.healthy else "resubscribing"
        return info

    @property
    def degraded(self) -> bool:
        return not self.store.up or (self.bus is not None and not self.bus.healthy)

    def _on_up_change(self, up: bool) -> None:
        self.metrics.store_up.labels(backend=self.store.backend).set(1 if up else 0)
        if up:
            log.info("session store reachable again")
        else:
            log.warning("session store unreachable: moves are paused until it is back")

    # --- records --------------------------------------------------------------------------------
    def _on_admit(self, session: Session) -> None:
        self.lobby.invalidate()
        journal = SessionJournal(session, self)
        session.publisher = journal
        self.journals.add(journal)
        self.follow(session.id)  # takeover notices and remote spectators' presence

    def _release(self, session: Session) -> None:
        self.lobby.invalidate()
        self._remote_counts.pop(session.id, None)
        if isinstance(session.publisher, SessionJournal):
            self.journals.discard(session.publisher)
        self.unfollow(session.id)

    def _ttl_s(self) -> float:
        return self.grace_s + 3 * self.lease_s

    async def save(self, session: Session, event: bytes | None = None) -> None:
        started = time.perf_counter()
        try:
            await self.store.save(session.to_record(), self.instance_id, self._ttl_s(), event)
        except StoreUnavailable:
            self.metrics.store_errors.inc()
            raise
        self.metrics.store_write_seconds.observe(time.perf_counter() - started)

    async def created(self, session: Session) -> None:
        """A new session: its first state is stored (and the lease taken) before its id is handed out."""
        if not self.store.up:  # known to be down: refuse at once instead of waiting for a retry
            await self.registry.remove(session)
            self._release(session)
            raise StoreUnavailable("the session store is unreachable")
        session.publish_state(maze_changed=True)
        journal = session.publisher
        assert isinstance(journal, SessionJournal)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FLUSH_TIMEOUT_S):
                await journal.flush()
        if journal.stalled or session.closed:
            await self.registry.remove(session)
            self._release(session)
            raise StoreUnavailable("the session store is unreachable")

    async def forget(self, session: Session) -> None:
        """A reaped session: gone from the store too (unless another instance took it over)."""
        self._release(session)
        if self.registry.get(session.id) is not None:
            return  # a player came back meanwhile and the game was loaded again: keep it
        with contextlib.suppress(StoreUnavailable):
            await self.store.delete(session.id, self.instance_id)

    async def lost(self, session: Session) -> None:
        """Another instance holds this session now: its player there replaced ours (4000)."""
        self._release(session)
        if self.registry.get(session.id) is session:
            log.info("session %s continues on another instance", session.id)
            await self.registry.remove(session, CLOSE_REPLACED, "replaced")

    # --- finding sessions ---------------------------------------------------------------------
    async def load(self, session_id: str) -> SessionRecord | None:
        if not _plausible_id(session_id):
            return None
        return await self.store.load(session_id)

    async def local(self, session_id: str) -> tuple[Session | None, bool]:
        """(session, restored): the live session, restored from the store if it is not in memory."""
        session = self.registry.get(session_id)
        if session is not None:
            return session, False
        pending = self._restoring.get(session_id)
        if pending is not None:
            return await asyncio.shield(pending), False
        future: asyncio.Future[Session | None] = asyncio.get_running_loop().create_future()
        self._restoring[session_id] = future
        try:
            record = await self.load(session_id)
            session = self.registry.restore(record) if record is not None else None
            future.set_result(session)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._restoring.pop(session_id, None)
        return session, session is not None

    async def for_player(self, session_id: str, token: str | None) -> tuple[Session | None, bool]:
        """(session, restored): the session a player may steer here, this instance holding its lease.

        Raises PermissionError for a wrong token. On a shared store the lease is taken (a takeover
        always wins) and, unless this instance already held it, the game is loaded from the store
        after the claim, so it includes the last state the previous instance stored.
        """
        if not self.store.shared:
            session, restored = await self.local(session_id)
            if session is not None and not session.player_token_ok(token):
                raise PermissionError("a valid player token is needed to play this session")
            return session, restored
        session = self.registry.get(session_id)
        if session is None:
            record = await self.load(session_id)
            if record is None:
                return None, False
            if not tokens_equal(token_hash(token), record.player_token_hash) or not token:
                raise PermissionError("a valid player token is needed to play this session")
        elif not session.player_token_ok(token):
            raise PermissionError("a valid player token is needed to play this session")
        previous = await self.store.claim(session_id, self.instance_id, self.lease_s)
        if session is not None and previous in (None, self.instance_id):
            return session, False
        if previous not in (None, self.instance_id):
            await self.store.publish(session_id, encode_event(Claimed(self.instance_id)))
        if session is not None:
            await self.lost(session)  # ours in memory, but another instance had it: stale
        record = await self.store.load(session_id)
        if record is None:
            return None, False
        current = self.registry.get(session_id)
        if current is not None:  # restored meanwhile by a concurrent connection
            return current, True
        return self.registry.restore(record), True

    async def summary(self, session_id: str) -> dict[str, Any] | None:
        session = self.registry.get(session_id)
        if session is not None:
            return session.summary()
        record = await self.load(session_id)
        return record.summary if record is not None else None

    async def public_summaries(self) -> list[dict[str, Any]]:
        """Every listed game (the lobby's snapshot builder: at most once per GM_LOBBY_CACHE_S)."""
        local = {s.id: s.summary() for s in self.registry.public()}
        try:
            stored = await self.store.list_public(self.lobby.max_listed)
        except StoreUnavailable:
            stored = []
        merged = {s["session_id"]: s for s in stored}
        merged.update(local)  # this instance's own sessions: fresher than their stored copy
        return sorted(merged.values(), key=lambda s: s.get("created_at", 0.0))

    # --- background ---------------------------------------------------------------------------
    async def _keep_alive(self) -> None:
        """Check reachability every second; refresh leases and TTLs of the sessions held here."""
        interval = min(1.0, self.lease_s / 4)
        last_touch = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.ping()
            except StoreUnavailable:
                continue
            if time.monotonic() - last_touch < self.lease_s / 3:
                continue
            last_touch = time.monotonic()
            try:
                await self._touch()
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("refreshing session leases failed")

    async def _touch(self) -> None:
        sessions = {s.id: s for s in self.registry}
        lost, missing = await self.store.touch(list(sessions), self.instance_id, self._ttl_s())
        for sid in lost:
            await self.lost(sessions[sid])
        for sid in missing:  # e.g. Redis restarted empty: store it again from memory
            session = sessions[sid]
            with contextlib.suppress(StoreUnavailable, OwnershipLost):
                await self.save(session)

    # --- channel events (shared store) ---------------------------------------------------------
    def _on_event(self, session_id: str, data: bytes) -> None:
        try:
            event = decode_event(data)
        except EventError as exc:
            log.warning("ignoring an event on session %s: %s", session_id, exc)
            return
        session = self.registry.get(session_id)
        if isinstance(event, Claimed) and session is not None and event.owner != self.instance_id:
            asyncio.get_running_loop().create_task(self._taken_over(session))
        elif isinstance(event, Watchers) and session is not None:
            self._presence(session, event)
        if self.hub is not None:
            self.hub.on_event(session_id, event)

    async def _taken_over(self, session: Session) -> None:
        # The announcement may be stale (this instance claimed the session again since): the
        # lease decides. Unreachable store: the next lease refresh decides instead.
        with contextlib.suppress(StoreUnavailable):
            if await self.store.holder(session.id) != self.instance_id:
                await self.lost(session)

    def _presence(self, session: Session, event: Watchers) -> None:
        counts = self._remote_counts.setdefault(session.id, {})
        counts[event.instance] = event.count
        session.set_remote_spectators(sum(counts.values()))

    def _on_resubscribed(self) -> None:
        if self.hub is not None:
            self.hub.resync_all()


def _plausible_id(session_id: str) -> bool:
    return 0 < len(session_id) <= 64 and all(c.isalnum() or c in "-_" for c in session_id)

