"""Example-based tests of the maze rules (the properties live in test_maze_properties.py)."""

from __future__ import annotations

import json

import pytest

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
    distances,
    generate_maze,
    solve,
)

# A 5x5 serpentine: row 0 left->right, down at x=4, row 1 right->left, ... (one passage per joint).
SNAKE = (
    (NORTH | WEST | SOUTH, NORTH | SOUTH, NORTH | SOUTH, NORTH | SOUTH, NORTH | EAST),
    (NORTH | WEST, NORTH | SOUTH, NORTH | SOUTH, NORTH | SOUTH, SOUTH | EAST),
    (WEST | SOUTH, NORTH | SOUTH, NORTH | SOUTH, NORTH | SOUTH, NORTH | EAST),
    (NORTH | WEST, NORTH | SOUTH, NORTH | SOUTH, NORTH | SOUTH, SOUTH | EAST),
    (WEST | SOUTH, NORTH | SOUTH, NORTH | SOUTH, NORTH | SOUTH, NORTH | SOUTH | EAST),
)


def snake_maze() -> Maze:
    return Maze(5, 5, SNAKE)


def test_directions_match_the_wire_protocol() -> None:
    assert [d.value for d in Direction] == ["up", "down", "left", "right"]
    assert (Direction.UP.dx, Direction.UP.dy, Direction.UP.wall) == (0, -1, NORTH)
    assert (Direction.RIGHT.dx, Direction.RIGHT.dy, Direction.RIGHT.wall) == (1, 0, EAST)
    assert Direction("left").opposite is Direction.RIGHT
    assert Direction.DOWN.wall == SOUTH and Direction.LEFT.wall == WEST
    assert json.dumps([Direction.UP]) == '["up"]'
    with pytest.raises(ValueError):
        Direction("north")


@pytest.mark.parametrize(
    "size", [(4, 7), (7, 4), (41, 10), (10, 41), (0, 0), (-5, 5), (5.0, 5), (True, 5), ("7", 7)]
)
def test_out_of_range_sizes_are_rejected(size) -> None:
    with pytest.raises(ValueError, match=r"between 5 and 40|must be an integer"):
        generate_maze(*size, seed=1)


def test_extreme_and_non_square_sizes_generate() -> None:
    for width, height in [(5, 5), (40, 40), (5, 40), (40, 5), (12, 7)]:
        maze = generate_maze(width, height, seed=7)
        assert (maze.width, maze.height) == (width, height)
        assert len(maze.cells) == height and all(len(row) == width for row in maze.cells)
        assert maze.start == Point(0, 0)
        assert maze.goal == Point(width - 1, height - 1)
        assert len(distances(maze, maze.start)) == width * height


def test_seed_none_is_recorded_so_the_maze_can_be_regenerated() -> None:
    maze = generate_maze(9, 9)
    assert isinstance(maze.seed, int)
    assert generate_maze(9, 9, maze.seed) == maze


def test_different_seeds_give_different_mazes() -> None:
    mazes = {generate_maze(10, 10, seed).cells for seed in range(20)}
    assert len(mazes) == 20


def test_solver_follows_the_only_path_through_a_known_maze() -> None:
    maze = snake_maze()
    path = solve(maze, maze.start)
    R, L, D = Direction.RIGHT, Direction.LEFT, Direction.DOWN
    assert path == [R] * 4 + [D] + [L] * 4 + [D] + [R] * 4 + [D] + [L] * 4 + [D] + [R] * 4
    assert solve(maze, Point(4, 0), Point(4, 1)) == [D]
    assert solve(maze, Point(2, 2), Point(2, 2)) == []
    assert distances(maze, maze.start)[maze.goal] == 24


def test_solver_reports_an_unreachable_goal_and_points_outside() -> None:
    closed = Maze(5, 5, ((15,) * 5,) * 5)
    with pytest.raises(ValueError, match="not reachable"):
        solve(closed, closed.start)
    with pytest.raises(ValueError, match="outside"):
        solve(closed, Point(5, 0))


@pytest.mark.parametrize(
    "cells, message",
    [
        ([[15] * 5] * 4, "5 rows"),
        ([[15] * 5] * 4 + [[15] * 4], "5 cells"),
        ([[15] * 5] * 4 + [[15, 15, 15, 15, 16]], "bitmask"),
        ([[15 & ~NORTH, 15, 15, 15, 15]] + [[15] * 5] * 4, "border"),
        ([[15 & ~EAST, 15, 15, 15, 15]] + [[15] * 5] * 4, "one-sided"),
        ([[15 & ~SOUTH, 15, 15, 15, 15]] + [[15] * 5] * 4, "one-sided"),
    ],
)
def test_inconsistent_walls_are_rejected(cells, message) -> None:
    with pytest.raises(ValueError, match=message):
        Maze(5, 5, cells)


def test_maze_json_round_trip_uses_lists_of_lists() -> None:
    maze = generate_maze(6, 8, seed=3)
    data = json.loads(json.dumps(maze.to_dict()))
    assert set(data) == {"width", "height", "cells"}
    assert isinstance(data["cells"], list) and isinstance(data["cells"][0], list)
    assert Maze.from_dict(data, seed=3) == maze
    with pytest.raises(ValueError, match="missing 'cells'"):
        Maze.from_dict({"width": 5, "height": 5})


def test_config_levels_grow_and_cap() -> None:
    config = GameConfig(width=7, height=5, growth=2, max_size=12)
    sizes = [config.size_for_level(n) for n in (1, 2, 3, 4, 5)]
    assert sizes == [(7, 5), (9, 7), (11, 9), (12, 11), (12, 12)]
    assert GameConfig().size_for_level(100) == (40, 40)
    assert GameConfig(growth=0).size_for_level(9) == (7, 7)
    with pytest.raises(ValueError):
        config.size_for_level(0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 4},
        {"height": 41},
        {"growth": -1},
        {"max_size": 41},
        {"max_size": 4},
        {"width": 20, "max_size": 10},
    ],
)
def test_bad_configs_are_rejected(kwargs) -> None:
    with pytest.raises(ValueError):
        GameConfig(**kwargs)


def snake_game(now: float = 100.0) -> Game:
    game = Game.new(GameConfig(width=5, height=5), seed=1, now=now)
    game.maze = snake_maze()  # a known layout, so every move below has a known result
    return game


def test_wall_bump_is_refused_and_not_counted() -> None:
    game = snake_game()
    outcome = game.move(Direction.DOWN, now=101.0)  # south wall of (0, 0)
    assert (outcome.ok, outcome.won, outcome.direction) == (False, False, Direction.DOWN)
    assert game.player == Point(0, 0) and game.moves == 0
    assert not game.move("up", now=101.0).ok  # border
    assert game.move("right", now=101.0).ok
    assert game.player == Point(1, 0) and game.moves == 1


def test_winning_freezes_the_clock_and_refuses_further_moves() -> None:
    game = snake_game(now=100.0)
    path = solve(game.maze, game.player)
    outcomes = [game.move(d, now=100.0 + i) for i, d in enumerate(path, start=1)]
    assert all(o.ok for o in outcomes)
    assert [o.won for o in outcomes] == [False] * (len(path) - 1) + [True]
    assert game.status is GameStatus.WON and game.won
    assert game.moves == len(path) == 24
    assert game.elapsed(124.0) == game.elapsed(999.0) == 23.0  # from the first move (t=101) to the win
    after = game.move(Direction.LEFT, now=130.0)  # (3, 4) is open to the left, but the level is over
    assert (after.ok, after.won) == (False, False)
    assert game.player == game.maze.goal and game.moves == 24


def test_clock_starts_at_the_first_move() -> None:
    game = Game.new(GameConfig(), seed=5, now=10.0)
    assert game.elapsed(10.0) == game.elapsed(60.0) == 0.0  # the level is shown, nobody has moved yet
    blocked = next(d for d in Direction if not game.maze.can_move(game.player, d))
    assert not game.move(blocked, now=61.0).ok
    assert game.elapsed(62.0) == 0.0  # a wall bump is not a move: the clock still waits
    step = next(d for d in Direction if game.maze.can_move(game.player, d))
    assert game.move(step, now=70.0).ok
    assert game.elapsed(72.5) == 2.5
    assert game.elapsed(69.0) == 0.0  # never negative


def test_restart_keeps_the_maze_and_resets_progress() -> None:
    game = snake_game(now=0.0)
    for d in solve(game.maze, game.player):
        game.move(d, now=5.0)
    maze, version = game.maze, game.maze_version
    game.restart(now=50.0)
    assert game.maze is maze and game.level == 1
    assert (game.player, game.moves, game.status) == (maze.start, 0, GameStatus.PLAYING)
    assert game.maze_version == version + 1
    assert game.elapsed(51.0) == 0.0  # waits for the first move again
    game.move(solve(maze, maze.start)[0], now=52.0)
    assert game.elapsed(53.0) == 1.0


def test_next_level_builds_a_bigger_maze() -> None:
    game = Game.new(GameConfig(width=7, height=7, growth=2, max_size=10), seed=1, now=0.0)
    assert (game.level, game.maze_version, game.maze.width) == (1, 1, 7)
    for d in solve(game.maze, game.player):
        game.move(d, now=1.0)
    game.next_level(seed=2, now=3.0)
    assert (game.level, game.maze_version, game.maze.width, game.maze.height) == (2, 2, 9, 9)
    assert (game.player, game.moves, game.status, game.won_at) == (Point(0, 0), 0, GameStatus.PLAYING, None)
    assert game.maze == generate_maze(9, 9, 2)
    game.next_level(seed=3, now=4.0)
    assert (game.level, game.maze.width) == (3, 10)


def test_game_round_trips_through_json() -> None:
    game = snake_game(now=1.5)
    for d in solve(game.maze, game.player)[:7]:
        game.move(d, now=2.0)
    data = json.loads(json.dumps(game.to_dict(now=4.25)))
    assert data["elapsed_s"] == 2.25 and data["status"] == "playing" and data["player"] == {"x": 2, "y": 1}
    restored = Game.from_dict(data)
    assert restored == game
    assert restored.to_dict(now=4.25) == game.to_dict(now=4.25)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"player": {"x": 9, "y": 0}}, "outside"),
        ({"status": "won"}, "won_at"),
        ({"moves": -1}, "moves"),
        ({"level": 0}, "level"),
        ({"status": "paused"}, "paused"),
        ({"goal": {"x": "1", "y": 0}}, "integer"),
        ({"config": {"width": 3}}, "between"),
    ],
)
def test_game_from_dict_rejects_bad_input(change, message) -> None:
    data = Game.new(GameConfig(), seed=1, now=0.0).to_dict(now=0.0)
    with pytest.raises(ValueError, match=message):
        Game.from_dict({**data, **change})


def test_game_from_dict_names_a_missing_key() -> None:
    data = Game.new(GameConfig(), seed=1, now=0.0).to_dict(now=0.0)
    del data["maze"]
    with pytest.raises(ValueError, match="missing 'maze'"):
        Game.from_dict(data)
    with pytest.raises(ValueError):
        Game.from_dict([])
