"""Directions, points and the wall bits every other maze module shares.

Screen coordinates: (0, 0) is the top-left cell, x grows to the right, y grows downwards, so `up`
is y - 1. A cell's walls are a bitmask of the sides that are closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

NORTH = 1  # wall towards y - 1
EAST = 2  # wall towards x + 1
SOUTH = 4  # wall towards y + 1
WEST = 8  # wall towards x - 1
ALL_WALLS = NORTH | EAST | SOUTH | WEST


class Direction(StrEnum):
    """A move; the value is the wire name (`"up"` ...)."""

    UP = "up"
    DOWN = "down"
    LEFT = "left"
    RIGHT = "right"

    @property
    def dx(self) -> int:
        return _DELTAS[self][0]

    @property
    def dy(self) -> int:
        return _DELTAS[self][1]

    @property
    def wall(self) -> int:
        """The wall bit that blocks this move out of a cell."""
        return _WALLS[self]

    @property
    def opposite(self) -> Direction:
        return _OPPOSITES[self]


_DELTAS = {Direction.UP: (0, -1), Direction.DOWN: (0, 1), Direction.LEFT: (-1, 0), Direction.RIGHT: (1, 0)}
_WALLS = {Direction.UP: NORTH, Direction.DOWN: SOUTH, Direction.LEFT: WEST, Direction.RIGHT: EAST}
_OPPOSITES = {
    Direction.UP: Direction.DOWN,
    Direction.DOWN: Direction.UP,
    Direction.LEFT: Direction.RIGHT,
    Direction.RIGHT: Direction.LEFT,
}


@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int

    def step(self, direction: Direction) -> Point:
        return Point(self.x + direction.dx, self.y + direction.dy)

    def to_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y}

    @classmethod
    def from_dict(cls, data: Any) -> Point:
        if not isinstance(data, dict):
            raise ValueError(f"a point must be an object with x and y, got {data!r}")
        x, y = data.get("x"), data.get("y")
        if not isinstance(x, int) or not isinstance(y, int) or isinstance(x, bool) or isinstance(y, bool):
            raise ValueError(f"a point needs integer x and y, got {data!r}")
        return cls(x, y)


ORIGIN = Point(0, 0)
