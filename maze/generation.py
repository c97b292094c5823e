"""Seeded perfect-maze generation (iterative randomised depth-first search).

A perfect maze is a spanning tree of the grid: every cell is reachable and there is exactly one
path between any two cells. The DFS keeps an explicit stack, so a 40x40 maze (1600 cells deep in the
worst case) never touches Python's recursion limit; its long corridors also make it pleasant to play.
"""

from __future__ import annotations

import random

from maze.geometry import ALL_WALLS, Direction, Point
from maze.grid import Maze, check_size


def generate_maze(width: int, height: int, seed: int | None = None) -> Maze:
    """A perfect `width` x `height` maze, identical for identical (width, height, seed).

    `seed=None` draws a fresh seed, which is recorded on the maze so it can be regenerated.
    Start is (0, 0) and the goal is the far corner (width - 1, height - 1).
    """
    check_size(width, height)
    if seed is None:
        seed = random.randrange(2**63)
    elif not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"maze seed must be an integer, got {seed!r}")
    rng = random.Random(seed)

    cells = [[ALL_WALLS] * width for _ in range(height)]
    visited = [[False] * width for _ in range(height)]
    visited[0][0] = True
    stack = [Point(0, 0)]
    while stack:
        here = stack[-1]
        options = []
        for direction in Direction:  # enum order is fixed, so the choice depends only on the seed
            there = here.step(direction)
            if 0 <= there.x < width and 0 <= there.y < height and not visited[there.y][there.x]:
                options.append((direction, there))
        if not options:
            stack.pop()
            continue
        direction, there = rng.choice(options)
        cells[here.y][here.x] &= ~direction.wall
        cells[there.y][there.x] &= ~direction.opposite.wall
        visited[there.y][there.x] = True
        stack.append(there)

    return Maze(width, height, tuple(tuple(row) for row in cells), Point(0, 0), None, seed)
