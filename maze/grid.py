"""The immutable `Maze`: a grid of wall bitmasks plus start and goal, with validation and JSON form."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from maze.geometry import ALL_WALLS, EAST, NORTH, ORIGIN, SOUTH, WEST, Direction, Point

MIN_SIZE = 5
MAX_SIZE = 40


def check_size(width: Any, height: Any) -> None:
    """Raise ValueError unless both sides are integers in MIN_SIZE..MAX_SIZE (non-square is fine)."""
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"maze {name} must be an integer, got {value!r}")
        if not MIN_SIZE <= value <= MAX_SIZE:
            raise ValueError(f"maze {name} must be between {MIN_SIZE} and {MAX_SIZE}, got {value}")


@dataclass(frozen=True)
class Maze:
    """`cells[y][x]` holds the walls present around cell (x, y) (bits from `maze.geometry`).

    Construction validates the grid: sizes in range, border walls closed, and every inner wall
    recorded on both sides (east of (x, y) iff west of (x + 1, y); south iff north of the cell below).
    It does not require the maze to be perfect; `generate_maze` produces perfect ones.
    """

    width: int
    height: int
    cells: tuple[tuple[int, ...], ...]
    start: Point = ORIGIN
    goal: Point | None = None  # None: the far corner (width - 1, height - 1)
    seed: int | None = None

    def __post_init__(self) -> None:
        check_size(self.width, self.height)
        # Accept lists (e.g. from JSON) but store tuples so the maze is hashable and immutable.
        object.__setattr__(self, "cells", _as_rows(self.cells, self.width, self.height))
        if self.goal is None:
            object.__setattr__(self, "goal", Point(self.width - 1, self.height - 1))
        for name in ("start", "goal"):
            point = getattr(self, name)
            if not isinstance(point, Point) or not self.contains(point):
                raise ValueError(f"maze {name} {point!r} is outside the {self.width}x{self.height} grid")
        _check_walls(self.cells, self.width, self.height)

    # --- queries ---------------------------------------------------------------------------
    def contains(self, point: Point) -> bool:
        return 0 <= point.x < self.width and 0 <= point.y < self.height

    def walls(self, point: Point) -> int:
        return self.cells[point.y][point.x]

    def can_move(self, point: Point, direction: Direction) -> bool:
        """True when `point` is inside the maze and no wall closes its side towards `direction`."""
        if not self.contains(point):
            return False
        return not self.cells[point.y][point.x] & direction.wall

    def neighbors(self, point: Point) -> Iterator[tuple[Direction, Point]]:
        """Cells reachable from `point` in one move, in a fixed order (up, down, left, right)."""
        for direction in Direction:
            if self.can_move(point, direction):
                yield direction, point.step(direction)

    def passages(self) -> int:
        """Number of open passages between adjacent cells (cells - 1 for a perfect maze)."""
        total = 0
        for y, row in enumerate(self.cells):
            for x, walls in enumerate(row):
                total += x + 1 < self.width and not walls & EAST
                total += y + 1 < self.height and not walls & SOUTH
        return total

    # --- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The wire form: `{"width", "height", "cells"}` with `cells` as a list of lists."""
        return {"width": self.width, "height": self.height, "cells": [list(row) for row in self.cells]}

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        start: Point | None = None,
        goal: Point | None = None,
        seed: int | None = None,
    ) -> Maze:
        """Inverse of `to_dict` (start/goal/seed travel separately, e.g. in `Game.to_dict`)."""
        if not isinstance(data, dict):
            raise ValueError("a maze must be an object with width, height and cells")
        try:
            width, height, cells = data["width"], data["height"], data["cells"]
        except KeyError as exc:
            raise ValueError(f"maze is missing {exc.args[0]!r}") from None
        return cls(width, height, cells, start or ORIGIN, goal, seed)


def _as_rows(cells: Any, width: int, height: int) -> tuple[tuple[int, ...], ...]:
    if not isinstance(cells, Sequence) or isinstance(cells, str | bytes) or len(cells) != height:
        raise ValueError(f"maze cells must be {height} rows")
    rows = []
    for y, row in enumerate(cells):
        if not isinstance(row, Sequence) or isinstance(row, str | bytes) or len(row) != width:
            raise ValueError(f"maze row {y} must have {width} cells")
        for x, walls in enumerate(row):
            if not isinstance(walls, int) or isinstance(walls, bool) or not 0 <= walls <= ALL_WALLS:
                raise ValueError(f"cell ({x}, {y}) must be a wall bitmask 0..{ALL_WALLS}, got {walls!r}")
        rows.append(tuple(row))
    return tuple(rows)


def _check_walls(cells: tuple[tuple[int, ...], ...], width: int, height: int) -> None:
    for y in range(height):
        for x in range(width):
            walls = cells[y][x]
            if (y == 0 and not walls & NORTH) or (y == height - 1 and not walls & SOUTH):
                raise ValueError(f"cell ({x}, {y}) is missing its border wall")
            if (x == 0 and not walls & WEST) or (x == width - 1 and not walls & EAST):
                raise ValueError(f"cell ({x}, {y}) is missing its border wall")
            if x + 1 < width and bool(walls & EAST) != bool(cells[y][x + 1] & WEST):
                raise ValueError(f"wall between ({x}, {y}) and ({x + 1}, {y}) is one-sided")
            if y + 1 < height and bool(walls & SOUTH) != bool(cells[y + 1][x] & NORTH):
                raise ValueError(f"wall between ({x}, {y}) and ({x}, {y + 1}) is one-sided")
