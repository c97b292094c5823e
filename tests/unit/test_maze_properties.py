"""Property-based tests (hypothesis): perfect, solvable, wall-respecting, deterministic, round-tripping."""

from __future__ import annotations

import itertools
import json
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from maze import (
    EAST,
    NORTH,
    SOUTH,
    WEST,
    Direction,
    Game,
    GameConfig,
    GameStatus,
    Maze,
    Point,
    generate_maze,
    solve,
)

sizes = st.integers(min_value=5, max_value=40)
seeds = st.integers(min_value=0, max_value=2**64)
directions = st.sampled_from(list(Direction))
MODEST = settings(max_examples=60, deadline=None)


def open_neighbours(maze: Maze, x: int, y: int) -> list[tuple[int, int]]:
    """Independent of Maze.neighbors: reads the wall bits directly."""
    walls = maze.cells[y][x]
    out = []
    if not walls & NORTH:
        out.append((x, y - 1))
    if not walls & SOUTH:
        out.append((x, y + 1))
    if not walls & WEST:
        out.append((x - 1, y))
    if not walls & EAST:
        out.append((x + 1, y))
    return out


@MODEST
@given(width=sizes, height=sizes, seed=seeds)
def test_walls_are_symmetric_and_borders_closed(width: int, height: int, seed: int) -> None:
    maze = generate_maze(width, height, seed)
    for y in range(height):
        for x in range(width):
            walls = maze.cells[y][x]
            assert 0 <= walls <= 15
            if x == 0:
                assert walls & WEST
            if x == width - 1:
                assert walls & EAST
            if y == 0:
                assert walls & NORTH
            if y == height - 1:
                assert walls & SOUTH
            if x + 1 < width:
                assert bool(walls & EAST) == bool(maze.cells[y][x + 1] & WEST)
            if y + 1 < height:
                assert bool(walls & SOUTH) == bool(maze.cells[y + 1][x] & NORTH)


@MODEST
@given(width=sizes, height=sizes, seed=seeds)
def test_generated_mazes_are_perfect(width: int, height: int, seed: int) -> None:
    maze = generate_maze(width, height, seed)
    # Connected: a flood fill from the start reaches every cell ...
    seen = {(0, 0)}
    queue = deque([(0, 0)])
    while queue:
        for nxt in open_neighbours(maze, *queue.popleft()):
            assert 0 <= nxt[0] < width and 0 <= nxt[1] < height
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    assert len(seen) == width * height
    # ... and has exactly cells - 1 passages, so it is a tree: one path between any two cells.
    cells = [(x, y) for y in range(height) for x in range(width)]
    edges = {frozenset({cell, n}) for cell in cells for n in open_neighbours(maze, *cell)}
    assert len(edges) == width * height - 1 == maze.passages()


@MODEST
@given(width=sizes, height=sizes, seed=seeds, data=st.data())
def test_solver_path_uses_only_open_passages_and_reaches_the_goal(width, height, seed, data) -> None:
    maze = generate_maze(width, height, seed)
    start = Point(data.draw(st.integers(0, width - 1)), data.draw(st.integers(0, height - 1)))
    goal = Point(data.draw(st.integers(0, width - 1)), data.draw(st.integers(0, height - 1)))
    here = start
    visited = [start]
    path = solve(maze, start, goal)
    for direction in path:
        assert maze.can_move(here, direction)
        here = here.step(direction)
        visited.append(here)
    assert here == goal
    # A shortest path never revisits a cell (so never immediately backtracks).
    assert len(set(visited)) == len(visited)
    assert all(a.opposite is not b for a, b in itertools.pairwise(path))


@MODEST
@given(width=sizes, height=sizes, seed=seeds)
def test_generation_is_deterministic_by_seed(width: int, height: int, seed: int) -> None:
    first, second = generate_maze(width, height, seed), generate_maze(width, height, seed)
    assert first == second and first.to_dict() == second.to_dict() and first.seed == seed


@settings(max_examples=80, deadline=None)
@given(
    width=st.integers(5, 12),
    height=st.integers(5, 12),
    seed=seeds,
    moves=st.lists(directions, max_size=200),
)
def test_random_moves_never_cross_a_wall(width, height, seed, moves) -> None:
    game = Game.new(GameConfig(width=width, height=height), seed, now=0.0)
    counted = 0
    for i, direction in enumerate(moves):
        before, was_won = game.player, game.won
        outcome = game.move(direction, now=float(i))
        if outcome.ok:
            assert not was_won
            assert game.maze.can_move(before, direction)
            assert game.player == before.step(direction)
            counted += 1
        else:
            assert game.player == before
            assert was_won or not game.maze.can_move(before, direction)
        assert game.maze.contains(game.player)
        assert outcome.won == (outcome.ok and game.player == game.maze.goal)
        assert game.moves == counted
    assert (game.status is GameStatus.WON) == (game.player == game.maze.goal)


@MODEST
@given(
    width=st.integers(5, 40),
    height=st.integers(5, 40),
    seed=seeds,
    moves=st.lists(directions, max_size=60),
    levels=st.integers(0, 3),
    now=st.floats(0, 1e6, allow_nan=False),
)
def test_games_round_trip_through_json(width, height, seed, moves, levels, now) -> None:
    game = Game.new(GameConfig(width=width, height=height), seed, now=now)
    for level in range(levels):
        game.next_level(seed + level + 1, now=now + level)
    for i, direction in enumerate(moves):
        game.move(direction, now=now + levels + i)
    clock = now + levels + len(moves)
    data = json.loads(json.dumps(game.to_dict(clock)))
    restored = Game.from_dict(data)
    assert restored == game
    assert restored.to_dict(clock) == data
    assert Maze.from_dict(data["maze"], seed=game.maze.seed) == game.maze


@settings(max_examples=30, deadline=None)
@given(seed=seeds, width=st.integers(5, 15), height=st.integers(5, 15))
def test_solver_path_wins_the_game_in_exactly_its_length(seed, width, height) -> None:
    game = Game.new(GameConfig(width=width, height=height), seed, now=0.0)
    path = solve(game.maze, game.player)
    outcomes = [game.move(d, now=1.0) for d in path]
    assert all(o.ok for o in outcomes) and outcomes[-1].won
    assert game.moves == len(path) and game.status is GameStatus.WON
