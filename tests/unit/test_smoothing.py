"""model.smoothing.Smoother with synthetic frame sequences (time is passed in; no clocks, no sleeps)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from maze import Direction
from model.smoothing import Smoother, SmoothingConfig

UP, DOWN, LEFT, RIGHT = Direction.UP, Direction.DOWN, Direction.LEFT, Direction.RIGHT
FPS15 = 1 / 15
DEFAULTS = SmoothingConfig(hold_frames=3, hold_ms=180, min_confidence=0.55, repeat_ms=600)

Frame = tuple[str | None, float, Direction | None]
HAND_UP: Frame = ("one", 0.9, UP)
NO_HAND: Frame = (None, 0.0, None)
NEUTRAL: Frame = ("palm", 0.95, None)


def run(
    frames: Iterable[Frame], config: SmoothingConfig = DEFAULTS, dt: float = FPS15
) -> list[tuple[int, Direction]]:
    """Feed frames at a fixed rate; return (frame index, direction) of every command fired."""
    smoother = Smoother(config)
    fired = []
    for i, (gesture, confidence, direction) in enumerate(frames):
        out = smoother.update(gesture, confidence, direction, 100.0 + i * dt)
        if out is not None:
            fired.append((i, out))
    return fired


def test_defaults_match_settings(settings):
    assert SmoothingConfig.from_settings(settings) == DEFAULTS


def test_held_gesture_fires_once_on_the_third_frame():
    assert run([HAND_UP] * 5) == [(2, UP)]


def test_held_gesture_fires_within_300ms_at_15fps():
    (index, _), *_ = run([HAND_UP] * 10)
    assert index * FPS15 * 1000 < 300


def test_hold_time_fires_first_at_a_low_frame_rate():
    # At 5 fps two frames already span 200 ms >= hold_ms: fire on the second frame, not the third.
    assert run([HAND_UP] * 3, dt=0.2) == [(1, UP)]


def test_a_single_frame_never_fires_even_after_a_long_time():
    smoother = Smoother(DEFAULTS)
    assert smoother.update(*HAND_UP, now=0.0) is None
    assert smoother.update(*NO_HAND, now=5.0) is None


def test_holding_repeats_every_repeat_ms():
    fired = run([HAND_UP] * 40)  # 2.6 s at 15 fps
    times = [i * FPS15 for i, _ in fired]
    assert [d for _, d in fired] == [UP] * len(fired)
    assert fired[0][0] == 2
    assert len(fired) == 4  # at ~0.13 s, then every >= 0.6 s: 0.73, 1.33, 1.93 (2.53 is the 39th frame)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.6 - 1e-9 <= gap < 0.6 + FPS15 + 1e-9 for gap in gaps)


def test_no_hand_rearms():
    frames = [HAND_UP] * 3 + [NO_HAND] + [HAND_UP] * 3
    assert run(frames) == [(2, UP), (6, UP)]


def test_neutral_gesture_rearms():
    frames = [HAND_UP] * 3 + [NEUTRAL] * 2 + [HAND_UP] * 3
    assert run(frames) == [(2, UP), (7, UP)]


def test_a_different_direction_rearms_and_fires_its_own_move():
    frames = [HAND_UP] * 3 + [("peace", 0.9, RIGHT)] * 3
    assert run(frames) == [(2, UP), (5, RIGHT)]


def test_flicker_between_directions_never_fires():
    frames = [HAND_UP, ("peace", 0.9, RIGHT)] * 10
    assert run(frames) == []


def test_dropouts_interrupt_a_hold():
    # The hand is lost every third frame: never three frames in a row, never 180 ms.
    frames = [HAND_UP, HAND_UP, NO_HAND] * 6
    assert run(frames) == []


def test_low_confidence_frames_alone_never_fire():
    assert run([("one", 0.4, UP)] * 30) == []


def test_low_confidence_misclassification_does_not_break_a_hold():
    # One unsure frame of another direction in the middle of a hold is ignored.
    frames = [HAND_UP, HAND_UP, ("four", 0.3, LEFT), HAND_UP]
    assert run(frames) == [(3, UP)]


def test_a_hold_needs_mean_confidence():
    # Same direction, but confidence sagging: 0.6, 0.45, 0.45 -> mean 0.5 < 0.55, no move yet...
    frames = [("one", 0.6, UP), ("one", 0.45, UP), ("one", 0.45, UP)]
    assert run(frames) == []
    # ...until confident frames lift the mean of the last three over the threshold.
    frames += [("one", 0.9, UP)]
    assert run(frames) == [(3, UP)]


def test_same_direction_from_different_gestures_is_one_hold():
    # `one` and `like` both mean up in counting: a flicker between them still moves up once.
    frames = [("one", 0.9, UP), ("like", 0.8, UP), ("one", 0.9, UP)]
    assert run(frames) == [(2, UP)]


def test_reset_drops_the_hold():
    smoother = Smoother(DEFAULTS)
    smoother.update(*HAND_UP, now=0.0)
    smoother.update(*HAND_UP, now=0.066)
    assert smoother.holding == UP
    smoother.reset()
    assert smoother.holding is None
    assert smoother.update(*HAND_UP, now=0.133) is None


def test_accepts_direction_strings():
    smoother = Smoother(SmoothingConfig(hold_frames=1))
    assert smoother.update("one", 0.9, "left", 0.0) == LEFT


@pytest.mark.parametrize(
    "kwargs", [{"hold_frames": 0}, {"min_confidence": 1.5}, {"repeat_ms": 0}, {"hold_ms": -1}]
)
def test_invalid_config(kwargs):
    with pytest.raises(ValueError):
        SmoothingConfig(**kwargs)
