"""Calibration samples a player chose to donate: written as a landmark CSV when their session ends.

Only landmarks are kept (pixel x,y of the 21 points, the HaGRID landmark CSV layout that
`gesture-maze train --data` reads), never images. Without the player's opt-in the samples are
dropped with the session. One file per session, at most `MAX_GESTURES x MAX_SAMPLES_PER_GESTURE` rows.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from model.openset import NO_GESTURE
from model.personal import RELAXED, PlayerProfile

HEADER = [f"{axis}{i}" for i in range(1, 22) for axis in ("x", "y", "z")] + ["label"]


def write_donation(directory: Path, session_id: str, profile: PlayerProfile) -> Path | None:
    """The profile's landmarks as `<directory>/<time>-<session>.csv`; None when there is nothing."""
    rows = [
        [v for point in points for v in (point[0], point[1], "")] + [NO_GESTURE if g == RELAXED else g]
        for g, frames in profile.landmarks.items()
        for points in frames
    ]
    if not rows:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{session_id}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path
