"""One game session: the authoritative game and the game-feel rules around it.

Everything here runs on the event loop and never awaits in the middle of a mutation, so no locks are
needed: each change (move, restart, level, someone joining or leaving) happens atomically and makes
ONE `StateSnapshot` (version + 1) that goes to the session's `Publisher` (stream.sessions.publisher),
which delivers it to the `Audience` in order, directly or after storing it. The player's recognition
state lives in its `PlayerSlot`; a stored session comes back with `Session.from_record`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maze import Direction, Game, GameConfig, GameStatus, MoveOutcome, UndoneRun
from stream.edge.connection import Connection
from stream.edge.security import new_token, tokens_equal
from stream.metrics import Metrics
from stream.protocol.codes import CLOSE_GOING_AWAY
from stream.protocol.server import LastMove, StateBody, StateSnapshot, Won, encode
from stream.sessions.audience import Audience
from stream.sessions.game_feel import FeelConfig, friendly_name
from stream.sessions.player import PlayerSlot, StepVerdict
from stream.sessions.publisher import DirectPublisher, Publisher
from stream.store.base import SessionRecord, token_hash

# 0: a won level waits for `next_level` or a neutral hand (stream.sessions.game_feel)
DEFAULT_WIN_PAUSE_S = 0.0
DEFAULT_FEEL = FeelConfig()
STREAMING_S = 2.0  # a player whose last camera frame is older than this is not streaming
_SEED_SPACE = 2**62


@dataclass(frozen=True, slots=True)
class SessionOptions:
    width: int
    height: int
    seed: int | None
    scheme: str
    private: bool = False
    name: str | None = None  # None: a friendly generated name
    share_hand: bool = False  # send the hand skeleton (landmarks only) to spectators


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of a server shares (the registry passes it on)."""

    metrics: Metrics | None = None
    win_pause_s: float = DEFAULT_WIN_PAUSE_S
    clock: Callable[[], float] = time.monotonic
    feel: FeelConfig = DEFAULT_FEEL
    donations_dir: Path | None = None
    feedback_frames: int = 1
    # Spectators coming and going change only the count every state shows: such changes are
    # published at most once per interval (first at once, then the latest), never one state per
    # join or leave, so spectator churn cannot flood the player's outbox or the store.
    presence_interval_s: float = 0.5


def _level_seed(base: int | None, level: int) -> int | None:
    # A seeded session replays the same sequence of levels; an unseeded one draws fresh mazes.
    if base is None:
        return None
    return (base * 1_000_003 + level) % _SEED_SPACE


def watch_allowed(private: bool, player_hash: str, watch_hash: str | None, token: str | None) -> bool:
    if not private:
        return True
    if not token:
        return False
    # The player's token also lets its holder watch (e.g. a second screen).
    given = token_hash(token)
    return tokens_equal(given, watch_hash) or tokens_equal(given, player_hash)


class Session:
    """One game and the rules of play around it. Mutators return nothing awaitable: they publish."""

    def __init__(
        self,
        session_id: str,
        options: SessionOptions,
        config: GameConfig,
        *,
        context: SessionContext | None = None,
        game: Game | None = None,
        metrics: Metrics | None = None,
        win_pause_s: float | None = None,
        clock: Callable[[], float] | None = None,
        feel: FeelConfig | None = None,
    ) -> None:
        context = context or SessionContext()
        # Keyword shortcuts (tests, tools) override the shared context.
        overrides = {k: v for k, v in (("metrics", metrics), ("win_pause_s", win_pause_s), ("clock", clock),
                                       ("feel", feel)) if v is not None}
        self.context = dataclasses.replace(context, **overrides) if overrides else context
        self._clock = self.context.clock
        now = self._clock()
        self.id = session_id
        self.options = options
        self.name = options.name or friendly_name()
        self.scheme = options.scheme
        self.private = options.private
        self.share_hand = options.share_hand
        # Tokens: the player's is handed out once at creation; what is checked (and stored) is its hash.
        self.player_token: str | None = new_token()
        self.watch_token: str | None = new_token() if options.private else None
        self.player_token_hash = token_hash(self.player_token)
        self.watch_token_hash = token_hash(self.watch_token) if self.watch_token else None
        self.created_at = time.time()  # wall clock, for listings only
        self.game = game if game is not None else Game.new(config, options.seed, now)
        self.version = 0
        self.players_joined = 0
        self.audience = Audience()
        self.publisher: Publisher = DirectPublisher(self.audience)
        self.slot = PlayerSlot(self.context.feedback_frames)
        self.closed = False
        # Lifecycle clocks (monotonic): presence and the unjoined-slot expiry (stream.sessions.slots).
        self.started_at = now
        self.player_left_at: float | None = now  # never connected counts as gone since creation
        self.last_activity = now
        self.joined = False  # a player has connected at least once
        self.owner: str | None = None  # client address that created it (per-address cap)
        # Game feel (stream.sessions.game_feel): a win latches gestures until a neutral hand; a
        # keyboard/touch move pauses gesture moves for a moment; the level advances on a neutral hand.
        self.gestures_latched = False
        self.manual_until = 0.0
        self.last_frame_at: float | None = None
        self.neutral_since: float | None = None
        self._last_gesture_notice = 0.0
        self._made: StateSnapshot | None = None  # the newest state made (maybe not stored yet)
        self._advance_task: asyncio.Task[None] | None = None
        self._hand: str | None = None  # the gesture the camera shows now (None: no hand)
        self._hand_run = 0  # changes whenever `_hand` does: one run = one held gesture
        self._undone_run = -1  # gesture moves are paused while this run lasts (set by an undo)
        self._calibration_started: float | None = None
        self._presence_published = -math.inf  # when the last state went out (clock time)
        self._presence_due: asyncio.TimerHandle | None = None  # a coalesced presence state is scheduled

    # --- records (stream.store) -----------------------------------------------------------------
    def to_record(self) -> SessionRecord:
        snapshot = self.made_state()
        return SessionRecord(
            session_id=self.id,
            version=snapshot.version,
            # Every SessionOptions field (a new one is stored without changes here), current values.
            options={**dataclasses.asdict(self.options), "scheme": self.scheme, "name": self.name,
                     "share_hand": self.share_hand},
            player_token_hash=self.player_token_hash,
            watch_token_hash=self.watch_token_hash,
            created_at=self.created_at,
            game=self.game.to_dict(self._clock()),
            state=snapshot.body,
            summary=self.summary(),
            players_joined=self.players_joined,
        )

    @classmethod
    def from_record(cls, record: SessionRecord, context: SessionContext) -> Session:
        """A session brought back from the store (after a restart, or from another instance)."""
        game = Game.from_dict(record.game)
        now = context.clock()
        # Monotonic clocks are per process: rebase the level clock on the stored elapsed time.
        game.started_at = now - float(record.game.get("elapsed_s", 0.0))
        if game.won_at is not None:
            game.won_at = now
        options = SessionOptions(**record.options)
        session = cls(record.session_id, options, game.config, context=context, game=game)
        session.version = record.version
        session.created_at = record.created_at
        session.players_joined = record.players_joined
        session.player_token = None  # only its hash is stored
        session.player_token_hash = record.player_token_hash
        session.watch_token = None
        session.watch_token_hash = record.watch_token_hash
        session.joined = True  # it was created before: the unjoined-slot expiry is for fresh ones
        return session

    # --- access ---------------------------------------------------------------------------------
    def player_token_ok(self, token: str | None) -> bool:
        return bool(token) and tokens_equal(token_hash(token), self.player_token_hash)

    def watch_token_ok(self, token: str | None) -> bool:
        return watch_allowed(self.private, self.player_token_hash, self.watch_token_hash, token)

    @property
    def player(self) -> Connection | None:
        return self.audience.player

    # --- state ----------------------------------------------------------------------------------
    def _snapshot(self, last_move: LastMove | None = None, maze_changed: bool = False) -> StateSnapshot:
        game = self.game
        self.version += 1
        body = StateBody(
            session_id=self.id,
            name=self.name,
            level=game.level,
            player=game.player.to_dict(),
            goal=game.maze.goal.to_dict() if game.maze.goal else None,
            start=game.maze.start.to_dict(),
            moves=game.moves,
            status=game.status.value,
            elapsed_s=round(game.elapsed(self._clock()), 3),
            scheme=self.scheme,
            spectators=self.audience.watching,
            player_connected=self.audience.player is not None,
            share_hand=self.share_hand,
            version=self.version,
            last_move=last_move,
            calibrating=self.calibrating,
        )
        maze = game.maze.to_dict()
        snapshot = StateSnapshot(self.version, game.maze_version, maze_changed, body.to_dict(), maze)
        self._made = snapshot
        return snapshot

    def latest_state(self) -> StateSnapshot:
        """The newest delivered snapshot (used to resync a connection whose outbox overflowed)."""
        if self.audience.latest is None:
            self.audience.latest = self._made or self._snapshot()
        return self.audience.latest

    def made_state(self) -> StateSnapshot:
        """The newest snapshot made, stored or not (what a journal stores)."""
        return self._made or self._snapshot()

    def publish_state(self, last_move: LastMove | None = None, maze_changed: bool = False) -> StateSnapshot:
        snapshot = self._snapshot(last_move, maze_changed)
        self._presence_published = self._clock()
        self._cancel_presence()  # this state carries the current count too
        self.publisher.state(snapshot)
        return snapshot

    def publish(self, message: Any, *, spectators_only: bool = False) -> None:
        """A server message to everyone (or the spectators), in order with the states."""
        payload = message if isinstance(message, dict) else message.to_dict()
        self.publisher.notice(payload, encode(payload), spectators_only)  # encoded once for everyone

    @property
    def paused(self) -> bool:
        """True while the store cannot take changes: moves are refused rather than lost."""
        return self.publisher.paused

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
            self.manual_until = now + self.context.feel.manual_lockout_s
        run = self._hand_run if source == "gesture" else None
        outcome = self.game.move(direction, now, source, run)
        metrics = self.context.metrics
        if metrics is not None:
            metrics.moves.labels(
                direction=direction.value, source=source, result="ok" if outcome.ok else "wall"
            ).inc()
        self.publish_state(LastMove(direction.value, outcome.ok, source))
        if outcome.won:
            self._on_win(now)
        return outcome

    def gesture_move(self, direction: Direction) -> MoveOutcome | None:
        """A move fired by the camera; None when gestures are latched (since a win), paused by a
        recent keyboard/touch move (the last manual input wins for `manual_lockout_s`), paused since
        an undo until the hand changes, or while the player calibrates."""
        if (
            self.gestures_latched
            or self._clock() < self.manual_until
            or self._hand_run == self._undone_run
            or self.calibrating
        ):
            return None
        return self.move(direction, "gesture")

    @property
    def gestures_paused(self) -> bool:
        """Since an undo, while the hand that was undone is still shown."""
        return self._hand_run == self._undone_run

    def hand_seen(self, gesture: str | None) -> None:
        """What the player's hand shows in this frame (before any move it fires). A change of
        gesture (another one, no hand, or `no_gesture`) starts a new run: an undo takes back the
        moves of one run, and gesture moves paused by an undo resume with the next run."""
        if gesture != self._hand:
            self._hand = gesture
            self._hand_run += 1

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
        feel = self.context.feel
        if now - self.neutral_since < feel.neutral_hold_s:
            return
        won_at = self.game.won_at
        if not self.playing and won_at is not None and now - won_at >= feel.win_card_min_s:
            self.next_level()
        if self.playing:
            self.gestures_latched = False

    def undo(self, window_s: float) -> UndoneRun | None:
        """Take back every move of the last held gesture (maze.Game.undo's rule); one state to
        everyone. Gesture moves stay paused while that same hand is still held."""
        if self.closed:
            return None
        undone = self.game.undo(self._clock(), window_s)
        if undone is not None:
            if undone.moves[-1].run == self._hand_run:
                self._undone_run = self._hand_run  # the misread gesture is still shown: do not redo it
            # `last_move` says where the player went: back, the opposite way (nothing for wall bumps).
            self.publish_state(LastMove(undone.direction.opposite.value, True, "undo") if undone.ok else None)
        return undone

    # --- calibration: the game is frozen while the player shows the prompted gestures ----------
    @property
    def calibrating(self) -> bool:
        return self.slot.profile.recording is not None

    def start_calibration(self, gesture: str) -> None:
        """Record frames as samples of `gesture`; no moves are made and the level clock stands."""
        starting = not self.calibrating
        if starting:
            self._calibration_started = self._clock()
        self.slot.start_step(gesture)
        if starting:
            self.publish_state()  # everyone sees the game frozen

    def stop_calibration(self) -> StepVerdict | None:
        """End the current step (its verdict) and unfreeze the game; the clock skips the pause."""
        if not self.calibrating:
            return None
        verdict = self.slot.finish_step()
        started, self._calibration_started = self._calibration_started, None
        if started is not None and self.playing and self.game.moves > 0:
            self.game.started_at += self._clock() - started
        self.publish_state()
        return verdict

    def _on_win(self, now: float) -> None:
        game = self.game
        if self.context.metrics is not None:
            self.context.metrics.games_won.inc()
        self.gestures_latched = True
        self.publish(Won(game.level, game.moves, round(game.elapsed(now), 3)))
        self._cancel_advance()
        if self.context.win_pause_s > 0:
            loop = asyncio.get_running_loop()
            self._advance_task = loop.create_task(self._advance_later(), name="next-level")

    async def _advance_later(self) -> None:
        await asyncio.sleep(self.context.win_pause_s)
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
        self.publish_state(maze_changed=True)
        return True

    def restart(self) -> None:
        self._cancel_advance()
        self.game.restart(self._clock())
        self.publish_state(maze_changed=True)

    def set_share_hand(self, enabled: bool) -> None:
        self.share_hand = enabled
        self.publish_state()

    def set_scheme(self, scheme: str) -> None:
        self.scheme = scheme
        self.slot.set_scheme(scheme)
        self.publish_state()

    def gesture_notice_due(self, interval_s: float) -> bool:
        """Throttle for spectators' `gesture` messages (at most one per `interval_s`)."""
        if not self.audience.watching:
            return False
        now = self._clock()
        if now - self._last_gesture_notice < interval_s:
            return False
        self._last_gesture_notice = now
        return True

    def touch(self) -> None:
        """The player sent something (idle accounting)."""
        self.last_activity = self._clock()

    # --- presence -------------------------------------------------------------------------------
    def attach_player(self, conn: Connection) -> None:
        """Make `conn` the player; an older player connection is closed with 4000 "replaced"."""
        self.audience.seat_player(conn)
        self.players_joined += 1
        if self.player_left_at is not None and self.playing and self.game.moves > 0:
            # The clock stood still while the player was away (an outage is not play time).
            self.game.started_at += self._clock() - self.player_left_at
        self.player_left_at = None
        self.joined = True
        self.last_activity = self._clock()
        self.publish_state()

    def detach_player(self, conn: Connection) -> None:
        if self.audience.player is not conn:
            return  # already replaced: the newer connection stays
        self.audience.player = None
        self.player_left_at = self._clock()
        if not self.closed:
            self.publish_state()

    def add_spectator(self, conn: Connection) -> None:
        self.audience.spectators.add(conn)
        if not self._presence_changed():
            conn.send_state(self.latest_state())  # the game now; the new count follows shortly

    def remove_spectator(self, conn: Connection) -> None:
        if conn in self.audience.spectators:
            self.audience.spectators.discard(conn)
            self._presence_changed()

    def set_remote_spectators(self, count: int) -> None:
        """Spectators other instances relay (shared store): shown in every state."""
        if count != self.audience.remote:
            self.audience.remote = count
            self._presence_changed()

    def _presence_changed(self) -> bool:
        """The spectator count changed: publish now if the last state is older than the interval
        (True), else once when it is due (a burst of joins and leaves makes one state)."""
        if self.closed:
            return False
        wait = self._presence_published + self.context.presence_interval_s - self._clock()
        if wait <= 0:
            self.publish_state()
            return True
        if self._presence_due is None:
            self._presence_due = asyncio.get_running_loop().call_later(wait, self._publish_presence)
        return False

    def _publish_presence(self) -> None:
        self._presence_due = None
        if not self.closed:
            self.publish_state()

    def _cancel_presence(self) -> None:
        if self._presence_due is not None:
            self._presence_due.cancel()
            self._presence_due = None

    def abandoned(self, now: float, grace_s: float) -> bool:
        return (self.audience.player is None and self.player_left_at is not None
                and now - self.player_left_at > grace_s)

    # --- listing and teardown -------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        game = self.game
        return {
            "session_id": self.id,
            "name": self.name,
            "player_connected": self.audience.player is not None,
            "spectators": self.audience.watching,
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
        self._cancel_presence()
        self.audience.close_all(code, reason)
        await self.release_recognition()

    async def release_recognition(self) -> None:
        """The player left (or the session ended): no MediaPipe graph is held for an absent player;
        a closed session also forgets (or donates) its calibration samples."""
        await self.slot.release()
        if self.closed:
            await self.slot.forget(self.context.donations_dir, self.id)
