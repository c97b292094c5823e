"""Control schemes: which direction (if any) one frame's hand asks for.

- `counting`: the classified gesture is looked up in a configurable map (one -> up, peace -> right,
  three -> down, four -> left, like -> up, dislike -> down); every other gesture is neutral.
- `pointing`: decided from the landmarks' geometry, not from the classifier: when the index finger is
  the only extended finger (thumb ignored), the direction from its knuckle (MCP) to its tip, snapped
  to the nearest axis, is the move, whatever the rotation of the hand.

Selfie view: frames are the raw camera image, while the web client shows the player a mirrored
preview (like a mirror). A finger pointing to the player's right points to the LEFT of the raw image
and to the right of the preview, so pointing flips x: the move is the direction the player sees on
screen. Up and down are unaffected. `counting` does not depend on the view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from maze import Direction
from model.landmarks import (
    INDEX_MCP,
    INDEX_PIP,
    INDEX_TIP,
    MIDDLE_MCP,
    MIDDLE_PIP,
    MIDDLE_TIP,
    PINKY_PIP,
    PINKY_TIP,
    RING_PIP,
    RING_TIP,
    WRIST,
    Hand,
)
from model.openset import NO_GESTURE

SCHEMES = ("counting", "pointing")

DEFAULT_COUNTING_MAP: tuple[tuple[str, str], ...] = (
    ("one", "up"),
    ("peace", "right"),
    ("three", "down"),
    ("four", "left"),
    ("like", "up"),
    ("dislike", "down"),
)

# A finger is straight when its two segments (MCP->PIP, PIP->TIP) are within ~35 degrees.
_STRAIGHT_COS = 0.82
# The pointing finger must look long enough in the image (relative to the palm): a finger pointing
# at the camera is foreshortened and its image direction is noise.
_MIN_POINT_LENGTH = 0.45


def counting_table(counting_map: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, Direction]:
    """Validate a gesture -> direction mapping (pairs or a dict) and return it with Direction values."""
    pairs = counting_map.items() if isinstance(counting_map, Mapping) else counting_map
    table = {gesture: Direction(direction) for gesture, direction in pairs}
    if NO_GESTURE in table:
        raise ValueError(f"{NO_GESTURE!r} cannot move the player; map known gestures only")
    return table


def direction_for(
    scheme: str,
    gesture: str | None,
    hand: Hand | None,
    counting_map: Mapping[str, str] | Iterable[tuple[str, str]] = DEFAULT_COUNTING_MAP,
) -> Direction | None:
    """The direction one frame asks for under `scheme`, or None (no hand / neutral)."""
    if scheme == "counting":
        if gesture is None:
            return None
        table = counting_map if isinstance(counting_map, dict) else counting_table(counting_map)
        found = table.get(gesture)
        return Direction(found) if found is not None else None
    if scheme == "pointing":
        return pointing_direction(hand) if hand is not None else None
    raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")


def pointing_direction(hand: Hand) -> Direction | None:
    """Direction shown by a lone extended index finger, as the player sees it (mirrored x)."""
    p = hand.pixels  # pixel-proportional, so angles are right whatever the aspect ratio
    palm = float(np.linalg.norm(p[MIDDLE_MCP] - p[WRIST]))
    if palm <= 1e-6:
        return None
    if not _extended(p, INDEX_MCP, INDEX_PIP, INDEX_TIP):
        return None
    if any(_extended_loose(p, pip, tip) for pip, tip in _OTHER_FINGERS):
        return None
    vector = p[INDEX_TIP] - p[INDEX_MCP]
    if float(np.linalg.norm(vector)) < _MIN_POINT_LENGTH * palm:
        return None
    dx, dy = float(vector[0]), float(vector[1])
    if abs(dx) > abs(dy):
        # Mirror for the selfie view: image-right is the player's left on the preview.
        return Direction.LEFT if dx > 0 else Direction.RIGHT
    return Direction.DOWN if dy > 0 else Direction.UP


_OTHER_FINGERS = ((MIDDLE_PIP, MIDDLE_TIP), (RING_PIP, RING_TIP), (PINKY_PIP, PINKY_TIP))


def _extended(p: np.ndarray, mcp: int, pip: int, tip: int) -> bool:
    """Straight finger whose tip is farther from the wrist than its middle joint."""
    first, second = p[pip] - p[mcp], p[tip] - p[pip]
    norms = float(np.linalg.norm(first) * np.linalg.norm(second))
    if norms <= 1e-9:
        return False
    straight = float(first @ second) / norms >= _STRAIGHT_COS
    return straight and _extended_loose(p, pip, tip)


def _extended_loose(p: np.ndarray, pip: int, tip: int) -> bool:
    """Tip clearly beyond the middle joint, seen from the wrist (a curled finger folds back)."""
    return float(np.linalg.norm(p[tip] - p[WRIST])) > 1.1 * float(np.linalg.norm(p[pip] - p[WRIST]))
