"""Breadth-first search over open passages: shortest paths and distances."""

from __future__ import annotations

from collections import deque

from maze.geometry import Direction, Point
from maze.grid import Maze


def distances(maze: Maze, start: Point) -> dict[Point, int]:
    """Moves needed to reach every cell reachable from `start` (start itself is 0)."""
    _check_inside(maze, start, "start")
    dist = {start: 0}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for _, there in maze.neighbors(here):
            if there not in dist:
                dist[there] = dist[here] + 1
                queue.append(there)
    return dist


def solve(maze: Maze, start: Point, goal: Point | None = None) -> list[Direction]:
    """The shortest move sequence from `start` to `goal` (default: the maze's goal).

    Returns [] when start == goal; raises ValueError when the goal cannot be reached (never for a
    generated maze, which is perfect).
    """
    target = maze.goal if goal is None else goal
    assert target is not None  # Maze.__post_init__ always fills the goal
    _check_inside(maze, start, "start")
    _check_inside(maze, target, "goal")
    came_from: dict[Point, tuple[Point, Direction] | None] = {start: None}
    queue = deque([start])
    while queue and target not in came_from:
        here = queue.popleft()
        for direction, there in maze.neighbors(here):
            if there not in came_from:
                came_from[there] = (here, direction)
                queue.append(there)
    if target not in came_from:
        raise ValueError(f"goal {target} is not reachable from {start}")
    path: list[Direction] = []
    step = came_from[target]
    while step is not None:
        previous, direction = step
        path.append(direction)
        step = came_from[previous]
    path.reverse()
    return path


def _check_inside(maze: Maze, point: Point, name: str) -> None:
    if not maze.contains(point):
        raise ValueError(f"{name} {point} is outside the {maze.width}x{maze.height} maze")
