"""The registry of live sessions: the only place sessions are created, restored and reaped."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

from maze import Game, GameConfig
from stream.protocol.codes import CLOSE_GOING_AWAY
from stream.sessions.session import Session, SessionContext, SessionOptions
from stream.sessions.slots import OwnerLimitError, SlotPolicy
from stream.store.base import SessionRecord

log = logging.getLogger(__name__)


class SessionLimitError(RuntimeError):
    """The server holds `max_sessions` live sessions: new ones are refused (HTTP 503)."""


class SessionRegistry:
    """Every live session by id; the only place sessions are created and reaped."""

    def __init__(
        self,
        *,
        max_sessions: int,
        config_for: Callable[[SessionOptions], GameConfig],
        context: SessionContext | None = None,
        slots: SlotPolicy | None = None,
        **context_fields: object,
    ) -> None:
        # `context_fields` (metrics=, clock=, feel=, ...) are a shortcut for a SessionContext.
        self.context = context or SessionContext(**context_fields)  # type: ignore[arg-type]
        self.metrics = self.context.metrics
        self._clock = self.context.clock
        self.max_sessions = max_sessions
        self.slots = slots or SlotPolicy()
        self._owned: Counter[str] = Counter()  # live sessions per creating address
        self._config_for = config_for
        self._sessions: dict[str, Session] = {}
        # Durability hooks (stream.durability.service): a new or restored session gets its journal;
        # a reaped one is deleted from the store.
        self.on_admit: Callable[[Session], None] | None = None
        self.on_reaped: Callable[[Session], Awaitable[None]] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))  # a copy: safe while sessions come and go

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def create(self, options: SessionOptions, owner: str | None = None, game: Game | None = None) -> Session:
        """A new session (`game`: its first level, made beforehand, e.g. by `new_game` off the loop)."""
        self.check_room(owner)
        session_id = secrets.token_urlsafe(9)  # 72 bits: ids are listed publicly, tokens guard access
        while session_id in self._sessions:
            session_id = secrets.token_urlsafe(9)
        session = Session(session_id, options, self._config_for(options), context=self.context, game=game)
        return self._admit(session, owner)

    def check_room(self, owner: str | None = None) -> None:
        """Raises OwnerLimitError / SessionLimitError when a new session would be refused."""
        if owner is not None and not self.slots.admits(self._owned[owner]):
            raise OwnerLimitError(f"this address holds {self.slots.max_per_owner} live sessions already")
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitError(f"the server is full ({self.max_sessions} sessions)")

    def new_game(self, options: SessionOptions) -> Game:
        """The first level of a session with `options`: blocking CPU work (a 40x40 maze takes tens of
        milliseconds), so callers on the event loop run it in a thread."""
        return Game.new(self._config_for(options), options.seed, self._clock())

    def restore(self, record: SessionRecord) -> Session:
        """A session brought back from the store (after a restart, or from another instance)."""
        if record.session_id not in self._sessions and len(self._sessions) >= self.max_sessions:
            raise SessionLimitError(f"the server is full ({self.max_sessions} sessions)")
        session = self._admit(Session.from_record(record, self.context))
        if not session.playing:
            session.next_level()  # it was won before the restart: the next level is due
        return session

    def _admit(self, session: Session, owner: str | None = None) -> Session:
        self._sessions[session.id] = session
        if owner is not None:
            session.owner = owner
            self._owned[owner] += 1
        self._update_gauge()
        if self.on_admit is not None:
            self.on_admit(session)
        return session

    def public(self) -> list[Session]:
        """Listed sessions: live games (player connected) first, then away ones; newest first in each."""
        listed = [s for s in self._sessions.values() if not s.private]
        return sorted(listed, key=lambda s: (s.player is None, -s.created_at))

    async def remove(
        self, session: Session, code: int = CLOSE_GOING_AWAY, reason: str = "session closed"
    ) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            self._disown(session)
            self._update_gauge()
        await session.close(code, reason)

    async def reap(self, grace_s: float) -> int:
        """Remove sessions whose player has been gone longer than `grace_s`; returns how many."""
        reaped = 0
        for session in list(self._sessions.values()):
            # Checked again right before each removal: a player may rejoin while earlier ones close.
            now = self._clock()
            unjoined = self.slots.unjoined_expired(session.joined, now - session.started_at)
            if session.abandoned(now, grace_s) or unjoined:
                await self.remove(session, CLOSE_GOING_AWAY, "session expired")
                if self.on_reaped is not None:
                    await self.on_reaped(session)
                reaped += 1
        return reaped

    async def release_idle_trackers(self, idle_s: float) -> int:
        """Release the hand tracker of every player that has sent no frame for `idle_s` (a game kept
        open without a camera holds no MediaPipe graph); its next frame makes a new one."""
        released = 0
        for session in list(self._sessions.values()):
            if session.slot.idle(time.monotonic(), idle_s):
                await session.slot.release()
                released += 1
        return released

    async def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        self._owned.clear()
        self._update_gauge()
        await asyncio.gather(*(s.close(code, reason) for s in sessions), return_exceptions=True)

    def _disown(self, session: Session) -> None:
        if session.owner is not None:
            self._owned[session.owner] -= 1
            if self._owned[session.owner] <= 0:
                del self._owned[session.owner]  # memory bounded by live sessions

    def _update_gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.sessions.set(len(self._sessions))


async def run_reaper(
    registry: SessionRegistry, grace_s: float, interval_s: float, tracker_idle_s: float = 0.0
) -> None:
    """Background task (owned by the lifespan): every `interval_s`, reap abandoned sessions and
    release idle trackers (`tracker_idle_s` > 0)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            reaped = await registry.reap(grace_s)
            if tracker_idle_s > 0:
                await registry.release_idle_trackers(tracker_idle_s)
        except Exception:  # keep reaping next time; one bad session must not stop the reaper
            log.exception("reaper failed")
            continue
        if reaped:
            log.info("reaped %d abandoned session(s)", reaped)
