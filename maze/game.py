"""One player's game: levels that grow, moves that respect walls, win detection and a full JSON round trip.

Time is always passed in (`now`, float seconds from a monotonic clock), so the rules stay pure and tests
control the clock. The stream layer owns the clock, the seeds and when to advance a level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from maze.generation import generate_maze
from maze.geometry import Direction, Point
from maze.grid import MAX_SIZE, MIN_SIZE, Maze, check_size


class GameStatus(StrEnum):
    PLAYING = "playing"
    WON = "won"


@dataclass(frozen=True)
class GameConfig:
    """Level 1 is `width` x `height`; each level adds `growth` cells to both sides, capped at `max_size`."""

    width: int = 7
    height: int = 7
    growth: int = 2
    max_size: int = 40

    def __post_init__(self) -> None:
        check_size(self.width, self.height)
        if not isinstance(self.growth, int) or isinstance(self.growth, bool) or self.growth < 0:
            raise ValueError(f"level growth must be a non-negative integer, got {self.growth!r}")
        if not isinstance(self.max_size, int) or not MIN_SIZE <= self.max_size <= MAX_SIZE:
            raise ValueError(f"max_size must be between {MIN_SIZE} and {MAX_SIZE}, got {self.max_size!r}")
        if max(self.width, self.height) > self.max_size:
            raise ValueError(
                f"maze {self.width}x{self.height} is larger than max_size {self.max_size}"
            )

    def size_for_level(self, level: int) -> tuple[int, int]:
        """(width, height) of `level` (1-based): min(base + growth * (level - 1), max_size) per side."""
        if not isinstance(level, int) or level < 1:
            raise ValueError(f"level must be an integer >= 1, got {level!r}")
        extra = self.growth * (level - 1)
        return min(self.width + extra, self.max_size), min(self.height + extra, self.max_size)

    def to_dict(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height, "growth": self.growth, "max_size": self.max_size}

    @classmethod
    def from_dict(cls, data: Any) -> GameConfig:
        if not isinstance(data, dict):
            raise ValueError("game config must be an object")
        return cls(**{key: data[key] for key in ("width", "height", "growth", "max_size") if key in data})


@dataclass(frozen=True)
class MoveOutcome:
    """`ok`: the player moved. `won`: this move reached the goal (True exactly once per level)."""

    direction: Direction
    ok: bool
    won: bool = False


@dataclass(frozen=True)
class UndoableMove:
    """A move attempt kept so it can be taken back (see `Game.undo`)."""

    direction: Direction
    source: str  # "keyboard" | "gesture": only gesture moves can be undone
    ok: bool
    before: Point  # where the player stood
    at: float
    run: int | None = None  # the held gesture that made it (the caller's id for one hold)


@dataclass(frozen=True)
class UndoneRun:
    """What one undo took back: every attempt of the last gesture run, oldest first."""

    moves: tuple[UndoableMove, ...]

    @property
    def direction(self) -> Direction:
        return self.moves[-1].direction

    @property
    def ok(self) -> bool:
        """Whether the player moved back (False: the run was wall bumps only)."""
        return any(m.ok for m in self.moves)

    @property
    def steps(self) -> int:
        return sum(1 for m in self.moves if m.ok)

    @property
    def before(self) -> Point:
        return self.moves[0].before


DEFAULT_UNDO_WINDOW_S = 4.0
MAX_RUN = 256  # attempts one held gesture can make that an undo takes back (far more than a level needs)


@dataclass
class Game:
    config: GameConfig
    maze: Maze
    level: int
    player: Point
    moves: int
    status: GameStatus
    maze_version: int
    started_at: float
    won_at: float | None = None
    # The undo slot: the attempts of the last gesture run (one held gesture: consecutive gesture
    # moves with the same `run`), or the last attempt otherwise. Transient (not serialised, not
    # compared); a keyboard move, another run, a restart or a new level starts it anew.
    undo_slot: list[UndoableMove] = field(default_factory=list, compare=False, repr=False)

    # --- lifecycle -------------------------------------------------------------------------
    @classmethod
    def new(cls, config: GameConfig, seed: int | None, now: float) -> Game:
        """Level 1 of `config`, built from `seed` (None: a fresh seed, recorded on the maze)."""
        width, height = config.size_for_level(1)
        maze = generate_maze(width, height, seed)
        return cls(config, maze, 1, maze.start, 0, GameStatus.PLAYING, 1, float(now))

    def restart(self, now: float) -> None:
        """Same maze, back to the start; moves and clock reset; clients must redraw (version bump)."""
        self._reset(self.maze, now)

    def next_level(self, seed: int | None, now: float) -> None:
        """Level + 1 with a new (usually larger) maze. Whether it is allowed yet is the caller's rule."""
        width, height = self.config.size_for_level(self.level + 1)
        maze = generate_maze(width, height, seed)
        self.level += 1
        self._reset(maze, now)

    def _reset(self, maze: Maze, now: float) -> None:
        self.maze = maze
        self.player = maze.start
        self.moves = 0
        self.status = GameStatus.PLAYING
        self.started_at = float(now)
        self.won_at = None
        self.undo_slot = []
        self.maze_version += 1

    # --- play ------------------------------------------------------------------------------
    def move(
        self, direction: Direction | str, now: float, source: str = "keyboard", run: int | None = None
    ) -> MoveOutcome:
        """Move one cell. A wall bump or a move after the win changes nothing and is not counted.

        Every attempt while playing (a wall bump too) goes to the undo slot: it joins the slot when
        it continues the same gesture run (`source` "gesture", the same `run`), else replaces it.
        """
        direction = Direction(direction)  # raises ValueError for anything but up/down/left/right
        if self.status is GameStatus.WON:
            return MoveOutcome(direction, ok=False)
        ok = self.maze.can_move(self.player, direction)
        attempt = UndoableMove(direction, source, ok, self.player, float(now), run)
        slot = self.undo_slot
        same_run = source == "gesture" and run is not None and slot and slot[-1].run == run
        if same_run and len(slot) < MAX_RUN and slot[-1].source == "gesture":
            slot.append(attempt)
        else:
            self.undo_slot = [attempt]
        if not ok:
            return MoveOutcome(direction, ok=False)
        if self.moves == 0:
            # The clock starts at the first move, not when the level appears: time spent finding the
            # camera, reading the legend or waiting for a countdown is not play time.
            self.started_at = float(now)
        self.player = self.player.step(direction)
        self.moves += 1
        if self.player == self.maze.goal:
            self.status = GameStatus.WON
            self.won_at = float(now)
            return MoveOutcome(direction, ok=True, won=True)
        return MoveOutcome(direction, ok=True)

    def undo(self, now: float, window_s: float = DEFAULT_UNDO_WINDOW_S) -> UndoneRun | None:
        """Take back the last GESTURE run: every attempt the last held gesture made, the newest at
        most `window_s` seconds ago; the player goes back to where that gesture began.

        The rule: only the last run (a keyboard move, another gesture run, a restart or a new level
        closes it), only gesture moves (keyboard moves are deliberate), only while the level is
        still being played (a winning move stands), and only once. A run of wall bumps only can be
        undone too: nothing moves back, but the misread it reports is real. Returns what was undone,
        or None when there is nothing to undo.
        """
        slot = self.undo_slot
        if (
            not slot
            or slot[-1].source != "gesture"
            or self.status is not GameStatus.PLAYING
            or not 0.0 <= float(now) - slot[-1].at <= window_s
        ):
            return None
        self.undo_slot = []
        undone = UndoneRun(tuple(slot))
        self.player = undone.before
        self.moves -= undone.steps
        return undone

    @property
    def won(self) -> bool:
        return self.status is GameStatus.WON

    def elapsed(self, now: float) -> float:
        """Seconds since the level's first move (0 before it); frozen at the moment of the win."""
        if self.moves == 0:
            return 0.0
        end = self.won_at if self.won_at is not None else now
        return max(0.0, end - self.started_at)

    # --- serialisation ---------------------------------------------------------------------
    def to_dict(self, now: float) -> dict[str, Any]:
        """JSON-ready snapshot; `elapsed_s` is derived for clients, `from_dict` restores the clock fields."""
        return {
            "config": self.config.to_dict(),
            "level": self.level,
            "seed": self.maze.seed,
            "maze": self.maze.to_dict(),
            "start": self.maze.start.to_dict(),
            "goal": self.maze.goal.to_dict() if self.maze.goal else None,
            "player": self.player.to_dict(),
            "moves": self.moves,
            "status": self.status.value,
            "maze_version": self.maze_version,
            "elapsed_s": round(self.elapsed(now), 3),
            "started_at": self.started_at,
            "won_at": self.won_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Game:
        """Inverse of `to_dict`: `Game.from_dict(g.to_dict(now)) == g`. Raises ValueError on bad input."""
        if not isinstance(data, dict):
            raise ValueError("a game must be an object")
        try:
            seed = data["seed"]
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise ValueError(f"seed must be an integer or null, got {seed!r}")
            start, goal = Point.from_dict(data["start"]), Point.from_dict(data["goal"])
            maze = Maze.from_dict(data["maze"], start=start, goal=goal, seed=seed)
            game = cls(
                config=GameConfig.from_dict(data["config"]),
                maze=maze,
                level=_int(data["level"], "level", minimum=1),
                player=Point.from_dict(data["player"]),
                moves=_int(data["moves"], "moves", minimum=0),
                status=GameStatus(data["status"]),
                maze_version=_int(data["maze_version"], "maze_version", minimum=0),
                started_at=_number(data["started_at"], "started_at"),
                won_at=None if data["won_at"] is None else _number(data["won_at"], "won_at"),
            )
        except KeyError as exc:
            raise ValueError(f"game is missing {exc.args[0]!r}") from None
        except TypeError as exc:  # e.g. a config with unknown types
            raise ValueError(f"invalid game: {exc}") from None
        if not maze.contains(game.player):
            raise ValueError(f"player {game.player} is outside the maze")
        if (game.status is GameStatus.WON) != (game.won_at is not None):
            raise ValueError("won_at must be set exactly when the status is won")
        return game


def _int(value: Any, name: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)
