"""Undo takes back the misread (every move of the held gesture) and calibration cannot go wrong
(the game is frozen, each step is checked against its prompt)."""

from __future__ import annotations

import numpy as np

from maze import Direction, Game, GameConfig, Point, solve
from stream.sessions.registry import Session
from tests.unit.test_game_feel import feel_session
from tests.unit.test_sessions import Clock, connect


def _open_run(game: Game) -> tuple[Direction, int]:
    """A direction with at least two open cells ahead of the start, and how many."""
    for direction in Direction:
        point, steps = game.player, 0
        while game.maze.can_move(point, direction):
            point, steps = point.step(direction), steps + 1
        if steps >= 2:
            return direction, steps
    raise AssertionError("no corridor of two cells from the start")


def test_undo_takes_back_every_attempt_of_one_gesture_run() -> None:
    game = Game.new(GameConfig(width=9, height=9), seed=11, now=0.0)
    start = game.player
    direction, steps = _open_run(game)
    for i in range(steps + 2):  # along the corridor, then bumping its end wall twice
        game.move(direction, 1.0 + 0.5 * i, "gesture", run=7)
    assert game.moves == steps
    undone = game.undo(now=1.0 + 0.5 * (steps + 2), window_s=4.0)
    assert undone is not None and undone.steps == steps and len(undone.moves) == steps + 2
    assert (game.player, game.moves) == (start, 0)  # where the held gesture began, not one back
    assert game.undo(now=10.0, window_s=100.0) is None  # once


def test_a_new_hold_or_a_keyboard_move_starts_a_new_run() -> None:
    game = Game.new(GameConfig(width=9, height=9), seed=11, now=0.0)
    first = solve(game.maze, game.player)[0]
    game.move(first, 1.0, "gesture", run=1)
    after_first = game.player
    second = solve(game.maze, game.player)[0]
    game.move(second, 1.5, "gesture", run=2)  # the hand changed in between
    undone = game.undo(now=2.0, window_s=4.0)
    assert undone is not None and len(undone.moves) == 1 and game.player == after_first
    game.move(second, 2.5, "gesture", run=3)
    game.move(second.opposite, 3.0, "keyboard")
    assert game.undo(now=3.1, window_s=4.0) is None  # keyboard moves are deliberate


def _session_at_corridor(clock: Clock) -> tuple[Session, Direction, Point]:
    session = feel_session(clock)
    connect(session, "player")
    return session, _open_run(session.game)[0], session.game.player


async def test_gesture_moves_stay_paused_after_an_undo_until_the_hand_changes() -> None:
    clock = Clock()
    session, direction, start = _session_at_corridor(clock)
    session.hand_seen("peace")
    assert session.gesture_move(direction) is not None
    clock.now += 0.6
    assert session.gesture_move(direction) is not None  # held: it repeats
    undone = session.undo(window_s=4.0)
    assert undone is not None and session.game.player == start
    clock.now += 0.6
    session.hand_seen("peace")  # still the same hand
    assert session.gesture_move(direction) is None and session.game.player == start
    session.hand_seen(None)  # the hand left (or another gesture, or no_gesture)
    session.hand_seen("peace")
    assert session.gesture_move(direction) is not None


async def test_calibration_freezes_moves_and_the_clock() -> None:
    clock = Clock()
    session, direction, _ = _session_at_corridor(clock)
    session.hand_seen("peace")
    session.gesture_move(direction)  # the level clock runs from the first move
    clock.now += 1.0
    elapsed = session.game.elapsed(clock.now)
    session.start_calibration("peace")
    assert session.calibrating and session.gesture_move(direction) is None
    clock.now += 30.0
    verdict = session.stop_calibration()
    assert verdict is not None and not session.calibrating
    assert session.game.elapsed(clock.now) == elapsed  # the 30 s of calibration are not play time


def _features(value: float) -> np.ndarray:
    return np.full(16, value, dtype=np.float32)


async def test_a_step_that_clearly_showed_another_gesture_is_dropped() -> None:
    clock = Clock()
    session, _, _ = _session_at_corridor(clock)
    slot, profile = session.slot, session.slot.profile
    session.start_calibration("three")
    for _ in range(20):  # a careless player shows an open palm when asked for three
        profile.record(_features(1.0), None)
        slot.calibration_frame("palm")
    verdict = session.stop_calibration()
    assert verdict is not None and not verdict.accepted and verdict.seen == "palm"
    assert profile.counts().get("three", 0) == 0  # nothing learnt from it

    session.start_calibration("three")
    for i in range(20):  # this player's three is read as a mix: what calibration is for
        profile.record(_features(2.0), None)
        slot.calibration_frame("three" if i % 3 == 0 else "four")
    verdict = session.stop_calibration()
    assert verdict is not None and verdict.accepted and verdict.matched == 7
    assert profile.counts()["three"] == 20
