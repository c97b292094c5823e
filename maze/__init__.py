"""Pure maze game logic: generation, moves, rules and serialisation (no I/O, no framework)."""

from maze.game import (
    DEFAULT_UNDO_WINDOW_S,
    Game,
    GameConfig,
    GameStatus,
    MoveOutcome,
    UndoableMove,
    UndoneRun,
)
from maze.generation import generate_maze
from maze.geometry import ALL_WALLS, EAST, NORTH, SOUTH, WEST, Direction, Point
from maze.grid import MAX_SIZE, MIN_SIZE, Maze, check_size
from maze.solver import distances, solve

__all__ = [
    "ALL_WALLS",
    "DEFAULT_UNDO_WINDOW_S",
    "EAST",
    "MAX_SIZE",
    "MIN_SIZE",
    "NORTH",
    "SOUTH",
    "WEST",
    "Direction",
    "Game",
    "GameConfig",
    "GameStatus",
    "Maze",
    "MoveOutcome",
    "Point",
    "UndoableMove",
    "UndoneRun",
    "check_size",
    "distances",
    "generate_maze",
    "solve",
]
