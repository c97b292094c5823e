"""Game sessions: the authoritative game, who is connected, and the registry that owns them all.

Everything here runs on the event loop and never awaits in the middle of a mutation, so no locks are
needed: each change (move, restart, level, someone joining or leaving) happens atomically and
produces ONE `StateSnapshot` (version + 1) that is queued, in the same order, to the player and
every spectator. Connections only queue (see stream.edge.connection), so a mutation never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maze import Direction, Game, GameConfig, GameStatus, MoveOutcome, UndoableMove
from model.personal import PlayerProfile
from stream.edge.connection import Connection
from stream.edge.security import new_token, tokens_equal
from stream.metrics import Metrics
from stream.protocol import CLOSE_GOING_AWAY, CLOSE_REPLACED, LastMove, StateSnapshot, Won, encode
from stream.sessions.donations import write_donation
from stream.sessions.game_feel import FeelConfig, friendly_name
from stream.sessions.slots import OwnerLimitError, SlotPolicy
from stream.store.base import token_hash

if TYPE_CHECKING:
    from model.recognizer import Recognizer
    from stream.durability.journal import SessionJournal
    from stream.recognition.feedback import SessionFeedback
    from stream.recognition.pipeline import FrameLane

log = logging.getLogger(__name__)

# 0: a won level waits for `next_level` or a neutral hand (stream.sessions.game_feel)
DEFAULT_WIN_PAUSE_S = 0.0
DEFAULT_FEEL = FeelConfig()
STREAMING_S = 2.0  # a player whose last camera frame is older than this is not streaming
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
    name: str | None = None  # None: a friendly generated name
    share_hand: bool = False  # send the hand skeleton (landmarks only) to spectators


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
        feel: FeelConfig = DEFAULT_FEEL,
        donations_dir: Path | None = None,
        game: Game | None = None,
    ) -> None:
        self.id = session_id
        # Per-player calibration samples (landmark features only); deleted on close unless donated.
        self.profile = PlayerProfile()
        self.donations_dir = donations_dir
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
        # Durability (stream.durability.service): when set, every state is stored before it is delivered.
        self.journal: SessionJournal | None = None
        self.remote_spectators = 0  # watching through other instances (shared store)
        self.players_joined = 0
        self.player: Connection | None = None
        self.spectators: set[Connection] = set()
        self.joining_spectators = 0  # handshakes between the cap check and add_spectator()
        self.player_left_at: float | None = now  # never connected counts as gone since creation
        self.started_at = now
        # a player has connected at least once (stream.sessions.slots: unjoined expiry)
        self.joined = False
        # client address that created it (stream.sessions.slots: per-address cap)
        self.owner: str | None = None
        self.last_activity = now
        self.closed = False
        self._latest: StateSnapshot | None = None  # the newest state delivered
        self._made: StateSnapshot | None = None  # the newest state made (maybe not stored yet)
        self._advance_task: asyncio.Task[None] | None = None
        self._last_gesture_notice = 0.0
        # Recognition, created on the first frame by the play handler (stream.web.play).
        self.recognizer: Recognizer | None = None
        self.lane: FrameLane | None = None
        # Game feel (stream.sessions.game_feel): name, hand sharing, shared control, the neutral-hand
        # level change.
        self.feel = feel
        self.name = options.name or friendly_name()
        self.share_hand = options.share_hand
        self.gestures_latched = False  # after a win: gestures steer again only after a neutral hand
        self.manual_until = 0.0  # gesture moves are ignored until then (a keyboard/touch move came)
        self.last_frame_at: float | None = None
        self.neutral_since: float | None = None  # since when the camera has shown no steering gesture
        self.feedback: SessionFeedback | None = None  # consent + recent hands (stream.recognition.feedback)

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
            "name": self.name,
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
            "share_hand": self.share_hand,
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
        if source != "gesture":
            self.manual_until = now + self.feel.manual_lockout_s
        outcome = self.game.move(direction, now, source)
        if self.metrics is not None:
            self.metrics.moves.labels(
                direction=direction.value, source=source, result="ok" if outcome.ok else "wall"
            ).inc()
        self.broadcast_state(LastMove(direction.value, outcome.ok, source))
        if outcome.won:
            self._on_win(now)
        return outcome

    def gesture_move(self, direction: Direction) -> MoveOutcome | None:
        """A move fired by the camera; None when gestures are latched (since a win) or paused by a
        recent keyboard/touch move (the last manual input wins for `manual_lockout_s`)."""
        if self.gestures_latched or self._clock() < self.manual_until:
            return None
        return self.move(direction, "gesture")

    def observe_hand(self, direction: Direction | None) -> None:
        """Every processed frame of the player. A neutral hand (no hand, or a gesture that steers
        nowhere) held `neutral_hold_s` re-arms gestures and, once the win card has shown
        `win_card_min_s`, starts the next level."""
        now = self._clock()
        self.last_frame_at = now
        if direction is not None:
            self.neutral_since = None
            return
        if self.neutral_since is None:
            self.neutral_since = now
        if now - self.neutral_since < self.feel.neutral_hold_s:
            return
        won_at = self.game.won_at
        if not self.playing and won_at is not None and now - won_at >= self.feel.win_card_min_s:
            self.next_level()
        if self.playing:
            self.gestures_latched = False

    def undo(self, window_s: float) -> UndoableMove | None:
        """Take back the last gesture move (maze.Game.undo's rule); one state to everyone."""
        if self.closed:
            return None
        last = self.game.undo(self._clock(), window_s)
        if last is not None:
            # `last_move` says where the player went: back, the opposite way (nothing for a wall bump).
            self.broadcast_state(LastMove(last.direction.opposite.value, True, "undo") if last.ok else None)
        return last

    def _on_win(self, now: float) -> None:
        game = self.game
        if self.metrics is not None:
            self.metrics.games_won.inc()
        self.gestures_latched = True
        self.broadcast(Won(game.level, game.moves, round(game.elapsed(now), 3)))
        self._cancel_advance()
        if self.win_pause_s > 0:
            loop = asyncio.get_running_loop()
            self._advance_task = loop.create_task(self._advance_later(), name="next-level")

    async def _advance_later(self) -> None:
        await asyncio.sleep(self.win_pause_s)
        self._advance_task = None
        streaming = self.last_frame_at is not None and self._clock() - self.last_frame_at < STREAMING_S
        # A player with a camera moves on with a neutral hand (observe_hand), never on a timer.
        if not self.closed and not self.playing and not streaming:
            self.next_level()

    def _cancel_advance(self) -> None:
        if self._advance_task is not None:
            self._advance_task.cancel()
            self._advance_task = None

    def next_level(self) -> bool:
        """Start the next (larger) level now; False unless the current one is won, and while the
        store cannot take changes (the timer, a neutral hand and `next_level` all come through here)."""
        if self.playing or self.paused:
            return False
        self._cancel_advance()
        self.game.next_level(_level_seed(self.options.seed, self.game.level + 1), self._clock())
        self.broadcast_state(maze_changed=True)
        return True

    def restart(self) -> None:
        self._cancel_advance()
        self.game.restart(self._clock())
        self.broadcast_state(maze_changed=True)

    def set_share_hand(self, enabled: bool) -> None:
        self.share_hand = enabled
        self.broadcast_state()

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
        if self.player_left_at is not None and self.playing and self.game.moves > 0:
            # The clock stood still while the player was away (an outage is not play time).
            self.game.started_at += self._clock() - self.player_left_at
        self.player_left_at = None
        self.joined = True
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
            "name": self.name,
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
        if self.closed:
            await self._forget_profile()

    async def _forget_profile(self) -> None:
        """The session is over: write donated calibration landmarks, then drop every sample."""
        profile = self.profile
        if profile.donate and self.donations_dir is not None and profile.landmarks:
            try:
                path = await asyncio.to_thread(write_donation, self.donations_dir, self.id, profile)
                log.info("calibration samples donated: %s", path)
            except OSError:
                log.exception("could not write donated calibration samples")
        profile.clear()


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
        slots: SlotPolicy | None = None,
        feel: FeelConfig = DEFAULT_FEEL,
        donations_dir: Path | None = None,
    ) -> None:
        self.donations_dir = donations_dir
        self.max_sessions = max_sessions
        self.slots = slots or SlotPolicy()
        self._owned: Counter[str] = Counter()  # live sessions per creating address
        self.feel = feel
        self._config_for = config_for
        self.metrics = metrics
        self.win_pause_s = win_pause_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        # Durability hooks (stream.durability.service): a new or restored session gets its journal; a reaped
        # one is deleted from the store.
        self.on_admit: Callable[[Session], None] | None = None
        self.on_reaped: Callable[[Session], Awaitable[None]] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))  # a copy: safe while sessions come and go

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def create(self, options: SessionOptions, owner: str | None = None) -> Session:
        if owner is not None and not self.slots.admits(self._owned[owner]):
            raise OwnerLimitError(f"this address holds {self.slots.max_per_owner} live sessions already")
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
            feel=self.feel,
            donations_dir=self.donations_dir,
        )
        return self._admit(session, owner)

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
            feel=self.feel,
            donations_dir=self.donations_dir,
            game=game,
        )
        session.joined = True  # it was created before: the unjoined-slot expiry is for fresh ones
        return self._admit(session)

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
