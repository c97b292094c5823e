"""Game sessions: the authoritative game, who is connected, and the registry that owns them all.

Everything here runs on the event loop and never awaits in the middle of a mutation, so no locks are
needed: each change (move, restart, level, someone joining or leaving) happens atomically and
produces ONE `StateSnapshot` (version + 1) that is queued, in the same order, to the player and
every spectator. Connections only queue (see stream.connection), so a mutation never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maze import Direction, Game, GameConfig, GameStatus, MoveOutcome
from stream.connection import Connection
from stream.metrics import Metrics
from stream.protocol import CLOSE_GOING_AWAY, CLOSE_REPLACED, LastMove, StateSnapshot, Won, encode
from stream.security import new_token, tokens_equal
from stream.store.base import token_hash

if TYPE_CHECKING:
    from model.recognizer import Recognizer
    from stream.journal import SessionJournal
    from stream.pipeline import FrameLane

log = logging.getLogger(__name__)

DEFAULT_WIN_PAUSE_S = 1.5  # between `won` and the next level's state: time to celebrate
_SEED_SPACE = 2**62


class SessionLimitError(RuntimeError):
    """The server holds `max_sessions` live sessions: new ones are refused (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class SessionOptions:
    width: int
    height: int
    seed: int | None
    scheme: str
    private: bool = False


def _level_seed(base: int | None, level: int) -> int | None:
    # A seeded session replays the same sequence of levels; an unseeded one draws fresh mazes.
    if base is None:
        return None
    return (base * 1_000_003 + level) % _SEED_SPACE


class Session:
    """One game and its connections. Mutators return nothing awaitable: they queue and return."""

    def __init__(
        self,
        session_id: str,
        options: SessionOptions,
        config: GameConfig,
        *,
        metrics: Metrics | None = None,
        win_pause_s: float = DEFAULT_WIN_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        game: Game | None = None,
    ) -> None:
        self.id = session_id
        self.options = options
        self.scheme = options.scheme
        self.private = options.private
        self.player_token = new_token()
        self.watch_token = new_token() if options.private else None
        # What is checked (and stored, stream.store): a restored session knows only the hashes.
        self.player_token_hash = token_hash(self.player_token)
        self.watch_token_hash = token_hash(self.watch_token) if self.watch_token else None
        self.created_at = time.time()  # wall clock, for listings only
        self.metrics = metrics
        self.win_pause_s = win_pause_s
        self._clock = clock
        now = clock()
        self.game = game if game is not None else Game.new(config, options.seed, now)
        self.version = 0
        # Durability (stream.durable): when set, every state is stored before it is delivered.
        self.journal: SessionJournal | None = None
        self.remote_spectators = 0  # watching through other instances (shared store)
        self.players_joined = 0
        self.player: Connection | None = None
        self.spectators: set[Connection] = set()
        self.joining_spectators = 0  # handshakes between the cap check and add_spectator()
        self.player_left_at: float | None = now  # never connected counts as gone since creation
        self.last_activity = now
        self.closed = False
        self._latest: StateSnapshot | None = None  # the newest state delivered
        self._made: StateSnapshot | None = None  # the newest state made (maybe not stored yet)
        self._advance_task: asyncio.Task[None] | None = None
        self._last_gesture_notice = 0.0
        # Recognition, created on the first frame by the play handler (stream.ws_play).
        self.recognizer: Recognizer | None = None
        self.lane: FrameLane | None = None

    # --- access ---------------------------------------------------------------------------------
    def player_token_ok(self, token: str | None) -> bool:
        return bool(token) and tokens_equal(token_hash(token), self.player_token_hash)

    def watch_token_ok(self, token: str | None) -> bool:
        return watch_allowed(self.private, self.player_token_hash, self.watch_token_hash, token)

    # --- state ----------------------------------------------------------------------------------
    def _snapshot(self, last_move: LastMove | None = None, maze_changed: bool = False) -> StateSnapshot:
        game, now = self.game, self._clock()
        self.version += 1
        body: dict[str, Any] = {
            "type": "state",
            "session_id": self.id,
            "level": game.level,
            "player": game.player.to_dict(),
            "goal": game.maze.goal.to_dict() if game.maze.goal else None,
            "start": game.maze.start.to_dict(),
            "moves": game.moves,
            "status": game.status.value,
            "elapsed_s": round(game.elapsed(now), 3),
            "scheme": self.scheme,
            "spectators": len(self.spectators) + self.remote_spectators,
            "player_connected": self.player is not None,
            "version": self.version,
        }
        if last_move is not None:
            body["last_move"] = last_move.to_dict()
        snapshot = StateSnapshot(self.version, game.maze_version, maze_changed, body, game.maze.to_dict())
        self._made = snapshot
        return snapshot

    def latest_state(self) -> StateSnapshot:
        """The newest delivered snapshot (used to resync a connection whose outbox overflowed)."""
        if self._latest is None:
            self._latest = self._made or self._snapshot()
        return self._latest

    def made_state(self) -> StateSnapshot:
        """The newest snapshot made, stored or not (what a journal stores)."""
        return self._made or self._snapshot()

    def connections(self) -> list[Connection]:
        return [self.player, *self.spectators] if self.player is not None else list(self.spectators)

    def broadcast_state(self, last_move: LastMove | None = None, maze_changed: bool = False) -> StateSnapshot:
        snapshot = self._snapshot(last_move, maze_changed)
        if self.journal is not None:
            self.journal.state(snapshot)  # stored first, then delivered (deliver_state) in order
        else:
            self.deliver_state(snapshot)
        return snapshot

    def deliver_state(self, snapshot: StateSnapshot) -> None:
        self._latest = snapshot
        for conn in self.connections():
            conn.send_state(snapshot)

    def broadcast(self, message: Any, *, spectators_only: bool = False) -> None:
        payload = message if isinstance(message, dict) else message.to_dict()
        text = encode(payload)  # once for everyone, like states
        if self.journal is not None:
            self.journal.message(payload, text, spectators_only)  # in order with the states
        else:
            self.deliver_encoded(payload["type"], text, spectators_only)

    def deliver_encoded(self, kind: str, text: str, spectators_only: bool = False) -> None:
        for conn in self.spectators if spectators_only else self.connections():
            conn.send_encoded(kind, text)

    @property
    def paused(self) -> bool:
        """True while the store cannot take changes: moves are refused rather than lost."""
        return self.journal is not None and self.journal.paused

    # --- game actions ---------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self.game.status is GameStatus.PLAYING

    def move(self, direction: Direction, source: str) -> MoveOutcome | None:
        """Apply one move (keyboard or gesture): one state to everyone; None if the level is won."""
        if not self.playing:
            return None
        now = self._clock()
        outcome = self.game.move(direction, now)
        if self.metrics is not None:
            self.metrics.moves.labels(
                direction=direction.value, source=source, result="ok" if outcome.ok else "wall"
            ).inc()
        self.broadcast_state(LastMove(direction.value, outcome.ok, source))
        if outcome.won:
            self._on_win(now)
        return outcome

    def _on_win(self, now: float) -> None:
        game = self.game
        if self.metrics is not None:
            self.metrics.games_won.inc()
        self.broadcast(Won(game.level, game.moves, round(game.elapsed(now), 3)))
        self._cancel_advance()
        self._advance_task = asyncio.get_running_loop().create_task(self._advance_later(), name="next-level")

    async def _advance_later(self) -> None:
        await asyncio.sleep(self.win_pause_s)
        self._advance_task = None
        if not self.closed and not self.playing:
            self.next_level()

    def _cancel_advance(self) -> None:
        if self._advance_task is not None:
            self._advance_task.cancel()
            self._advance_task = None

    def next_level(self) -> bool:
        """Start the next (larger) level now; False unless the current one is won."""
        if self.playing:
            return False
        self._cancel_advance()
        self.game.next_level(_level_seed(self.options.seed, self.game.level + 1), self._clock())
        self.broadcast_state(maze_changed=True)
        return True

    def restart(self) -> None:
        self._cancel_advance()
        self.game.restart(self._clock())
        self.broadcast_state(maze_changed=True)

    def set_scheme(self, scheme: str) -> None:
        self.scheme = scheme
        if self.recognizer is not None:
            self.recognizer.set_scheme(scheme)
        self.broadcast_state()

    def gesture_notice_due(self, interval_s: float) -> bool:
        """Throttle for spectators' `gesture` messages (at most one per `interval_s`)."""
        if not self.spectators and not self.remote_spectators:
            return False
        now = self._clock()
        if now - self._last_gesture_notice < interval_s:
            return False
        self._last_gesture_notice = now
        return True

    # --- presence -------------------------------------------------------------------------------
    def attach_player(self, conn: Connection) -> None:
        """Make `conn` the player; an older player connection is closed with 4000 "replaced"."""
        old, self.player = self.player, conn
        self.players_joined += 1
        if old is not None and old is not conn:
            old.close(CLOSE_REPLACED, "replaced")
        self.player_left_at = None
        self.last_activity = self._clock()
        self.broadcast_state()

    def detach_player(self, conn: Connection) -> None:
        if self.player is not conn:
            return  # already replaced: the newer connection stays
        self.player = None
        self.player_left_at = self._clock()
        if not self.closed:
            self.broadcast_state()

    def add_spectator(self, conn: Connection) -> None:
        self.spectators.add(conn)
        self.broadcast_state()

    def remove_spectator(self, conn: Connection) -> None:
        if conn in self.spectators:
            self.spectators.discard(conn)
            if not self.closed:
                self.broadcast_state()

    def abandoned(self, now: float, grace_s: float) -> bool:
        return self.player is None and self.player_left_at is not None and now - self.player_left_at > grace_s

    # --- listing and teardown -------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        game = self.game
        return {
            "session_id": self.id,
            "player_connected": self.player is not None,
            "spectators": len(self.spectators) + self.remote_spectators,
            "level": game.level,
            "moves": game.moves,
            "status": game.status.value,
            "scheme": self.scheme,
            "width": game.maze.width,
            "height": game.maze.height,
            "created_at": round(self.created_at, 3),
        }

    async def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "session closed") -> None:
        """Close every connection, finish the in-flight frame, release the hand tracker."""
        if self.closed:
            return
        self.closed = True
        self._cancel_advance()
        for conn in self.connections():
            conn.close(code, reason)
        await self.release_recognition()

    async def release_recognition(self) -> None:
        """Finish the in-flight frame and close the hand tracker (~80 MiB each); the next frame of a
        returning player makes a new one, so an absent player holds no MediaPipe graph."""
        lane, self.lane = self.lane, None
        if lane is not None:
            await lane.close()
        recognizer, self.recognizer = self.recognizer, None
        if recognizer is not None:
            await asyncio.to_thread(_close_and_trim, recognizer)


def watch_allowed(private: bool, player_hash: str, watch_hash: str | None, token: str | None) -> bool:
    if not private:
        return True
    if not token:
        return False
    # The player's token also lets its holder watch (e.g. a second screen).
    given = token_hash(token)
    return tokens_equal(given, watch_hash) or tokens_equal(given, player_hash)


def _close_and_trim(recognizer: Recognizer) -> None:
    recognizer.close()
    # A closed MediaPipe graph's memory stays in glibc's arenas unless handed back explicitly.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class SessionRegistry:
    """Every live session by id; the only place sessions are created and reaped."""

    def __init__(
        self,
        *,
        max_sessions: int,
        config_for: Callable[[SessionOptions], GameConfig],
        metrics: Metrics | None = None,
        win_pause_s: float = DEFAULT_WIN_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self._config_for = config_for
        self.metrics = metrics
        self.win_pause_s = win_pause_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        # Durability hooks (stream.durable): a new or restored session gets its journal; a reaped
        # one is deleted from the store.
        self.on_admit: Callable[[Session], None] | None = None
        self.on_reaped: Callable[[Session], Awaitable[None]] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))  # a copy: safe while sessions come and go

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def create(self, options: SessionOptions) -> Session:
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitError(f"the server is full ({self.max_sessions} sessions)")
        session_id = secrets.token_urlsafe(9)  # 72 bits: ids are listed publicly, tokens guard access
        while session_id in self._sessions:
            session_id = secrets.token_urlsafe(9)
        session = Session(
            session_id,
            options,
            self._config_for(options),
            metrics=self.metrics,
            win_pause_s=self.win_pause_s,
            clock=self._clock,
        )
        return self._admit(session)

    def restore(self, session_id: str, options: SessionOptions, game: Game) -> Session:
        """A session brought back from the store (after a restart, or from another instance)."""
        if session_id not in self._sessions and len(self._sessions) >= self.max_sessions:
            raise SessionLimitError(f"the server is full ({self.max_sessions} sessions)")
        session = Session(
            session_id,
            options,
            game.config,
            metrics=self.metrics,
            win_pause_s=self.win_pause_s,
            clock=self._clock,
            game=game,
        )
        return self._admit(session)

    def _admit(self, session: Session) -> Session:
        self._sessions[session.id] = session
        self._update_gauge()
        if self.on_admit is not None:
            self.on_admit(session)
        return session

    def public(self) -> list[Session]:
        return [s for s in self._sessions.values() if not s.private]

    async def remove(
        self, session: Session, code: int = CLOSE_GOING_AWAY, reason: str = "session closed"
    ) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            self._update_gauge()
        await session.close(code, reason)

    async def reap(self, grace_s: float) -> int:
        """Remove sessions whose player has been gone longer than `grace_s`; returns how many."""
        reaped = 0
        for session in list(self._sessions.values()):
            # Checked again right before each removal: a player may rejoin while earlier ones close.
            if session.abandoned(self._clock(), grace_s):
                await self.remove(session, CLOSE_GOING_AWAY, "session expired")
                if self.on_reaped is not None:
                    await self.on_reaped(session)
                reaped += 1
        return reaped

    async def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        self._update_gauge()
        await asyncio.gather(*(s.close(code, reason) for s in sessions), return_exceptions=True)

    def _update_gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.sessions.set(len(self._sessions))


async def run_reaper(registry: SessionRegistry, grace_s: float, interval_s: float) -> None:
    """Background task (owned by the lifespan): reap abandoned sessions every `interval_s`."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            reaped = await registry.reap(grace_s)
        except Exception:  # keep reaping next time; one bad session must not stop the reaper
            log.exception("reaper failed")
            continue
        if reaped:
            log.info("reaped %d abandoned session(s)", reaped)
