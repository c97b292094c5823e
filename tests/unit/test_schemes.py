"""model.schemes: the counting map and the pointing geometry (synthetic hands and real photos)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from maze import Direction
from model.landmarks import Hand, HandTracker
from model.schemes import DEFAULT_COUNTING_MAP, SCHEMES, counting_table, direction_for, pointing_direction
from tests.support.frames import load_rgb

UP, DOWN, LEFT, RIGHT = Direction.UP, Direction.DOWN, Direction.LEFT, Direction.RIGHT


def test_default_counting_map_is_the_settings_default(settings):
    assert tuple(settings.counting_map) == DEFAULT_COUNTING_MAP
    assert SCHEMES == ("counting", "pointing")


@pytest.mark.parametrize(
    ("gesture", "expected"),
    [
        ("one", UP),
        ("peace", RIGHT),
        ("three", DOWN),
        ("four", LEFT),
        ("like", UP),
        ("dislike", DOWN),
        ("palm", None),
        ("stop", None),
        ("fist", None),
        ("ok", None),
        (None, None),
    ],
)
def test_counting(settings, gesture, expected):
    assert direction_for("counting", gesture, None, settings.counting_map) == expected


def test_counting_map_is_configurable():
    custom = (("fist", "left"), ("palm", "right"))
    assert direction_for("counting", "fist", None, custom) == LEFT
    assert direction_for("counting", "one", None, custom) is None
    assert direction_for("counting", "palm", None, {"palm": "down"}) == DOWN


def test_counting_map_is_validated():
    with pytest.raises(ValueError):
        counting_table((("one", "north"),))


def test_unknown_scheme():
    with pytest.raises(ValueError):
        direction_for("telepathy", "one", None)


# --- pointing, synthetic geometry -------------------------------------------------------------------


def synthetic_hand(angle_deg: float, index: str = "straight", others: str = "curled") -> Hand:
    """A right-ish hand whose fingers point along `angle_deg` (0 = up in the image, 90 = image right)."""
    # Hand frame: wrist at origin, fingers towards -y (up). Units: palm length 1.
    mcps = {5: (-0.3, -1.0), 9: (-0.1, -1.05), 13: (0.1, -1.0), 17: (0.3, -0.9)}
    points = np.zeros((21, 2))
    points[1:5] = [(-0.4, -0.3), (-0.6, -0.5), (-0.7, -0.7), (-0.75, -0.85)]  # thumb out (ignored)
    for mcp, (x, y) in mcps.items():
        points[mcp] = (x, y)
        kind = index if mcp == 5 else others
        if kind == "straight":
            points[mcp + 1 : mcp + 4] = [(x, y - 0.45), (x, y - 0.75), (x, y - 1.0)]
        else:  # curled: the finger folds forward and back towards the palm
            points[mcp + 1 : mcp + 4] = [(x, y - 0.3), (x, y - 0.15), (x, y + 0.1)]
    theta = math.radians(angle_deg)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    image = points @ rot.T * 100 + 320  # pixels in a 640x640 frame
    normalized = np.zeros((21, 3), np.float32)
    normalized[:, :2] = image / 640
    return Hand(normalized=normalized, width=640, height=640, handedness="Right", score=0.99)


@pytest.mark.parametrize(
    ("angle", "expected"),
    [
        (0, UP),
        (30, UP),
        (-40, UP),
        (90, LEFT),  # points to the image's right = the player's left on the mirrored preview
        (60, LEFT),
        (-90, RIGHT),
        (-120, RIGHT),
        (180, DOWN),
        (150, DOWN),
        (215, DOWN),
    ],
)
def test_pointing_snaps_the_index_direction(angle, expected):
    assert pointing_direction(synthetic_hand(angle)) == expected
    assert direction_for("pointing", "whatever", synthetic_hand(angle)) == expected


def test_pointing_ignores_the_classifier_label():
    assert direction_for("pointing", "fist", synthetic_hand(0)) == UP
    assert direction_for("pointing", "one", None) is None


@pytest.mark.parametrize("angle", [0, 90, 200])
def test_pointing_needs_exactly_the_index_extended(angle):
    assert pointing_direction(synthetic_hand(angle, index="curled")) is None  # fist
    assert pointing_direction(synthetic_hand(angle, others="straight")) is None  # open palm


def test_pointing_at_the_camera_is_not_a_direction():
    hand = synthetic_hand(0)
    squashed = hand.normalized.copy()
    centre = squashed[0, :2]
    squashed[5:9, :2] = centre + (squashed[5:9, :2] - centre) * [1.0, 0.0] + [0, -0.02]  # foreshortened
    foreshortened = Hand(normalized=squashed, width=640, height=640, handedness="Right", score=0.9)
    assert pointing_direction(foreshortened) is None


def test_pointing_uses_pixel_proportions_not_normalised_ones():
    # In a wide 1280x320 frame a finger at 45 degrees in pixels looks steep in normalised units.
    hand = synthetic_hand(60)
    px = hand.pixels
    wide = np.zeros((21, 3), np.float32)
    wide[:, 0] = px[:, 0] / 1280 * 1.0
    wide[:, 1] = px[:, 1] / 320
    stretched = Hand(normalized=wide, width=1280, height=320, handedness="Right", score=0.9)
    assert pointing_direction(stretched) == LEFT


# --- pointing, real photos through MediaPipe -----------------------------------------------------


@pytest.fixture(scope="module")
def tracker():
    with HandTracker(static_image_mode=True) as t:
        yield t


ROTATIONS = {
    None: UP,
    cv2.ROTATE_90_CLOCKWISE: LEFT,  # finger now points to the image's right
    cv2.ROTATE_180: DOWN,
    cv2.ROTATE_90_COUNTERCLOCKWISE: RIGHT,
}


@pytest.mark.parametrize("rotation", list(ROTATIONS))
def test_pointing_with_a_real_hand_whatever_its_rotation(tracker, gestures_dir, rotation):
    rgb = load_rgb(gestures_dir / "one.jpg")
    if rotation is not None:
        rgb = np.ascontiguousarray(cv2.rotate(rgb, rotation))
    hand = tracker.detect(rgb)
    assert hand is not None
    assert direction_for("pointing", None, hand) == ROTATIONS[rotation]


def test_pointing_follows_the_selfie_view(tracker, gestures_dir):
    # The same hand seen in a mirror (the player's preview) points the other way in x.
    rgb = np.ascontiguousarray(cv2.rotate(load_rgb(gestures_dir / "one.jpg"), cv2.ROTATE_90_CLOCKWISE))
    raw, mirrored = tracker.detect(rgb), tracker.detect(np.ascontiguousarray(rgb[:, ::-1]))
    assert raw is not None and mirrored is not None
    assert (pointing_direction(raw), pointing_direction(mirrored)) == (LEFT, RIGHT)


@pytest.mark.parametrize("gesture", ["dislike", "fist", "four", "like", "palm", "peace", "stop", "three"])
def test_other_real_gestures_do_not_point(tracker, gestures_dir, gesture):
    hand = tracker.detect(load_rgb(gestures_dir / f"{gesture}.jpg"))
    assert hand is not None
    assert pointing_direction(hand) is None
