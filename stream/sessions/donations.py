"""Calibration samples a player chose to donate: written as a landmark CSV when their session ends.

Only landmarks are kept (pixel x,y of the 21 points, the HaGRID landmark CSV layout that
`gesture-maze train --data` reads), never images. Without the player's opt-in the samples are
dropped with the session.

Bounded three ways (docs/security.md, "Feedback, retraining and donations"), each refusal logged and
counted (`gesture_maze_donations_total{result}`):
- per game: at most `max_per_gesture` samples of a gesture (spread evenly over what was recorded) and
  `max_samples` in all, one file;
- per address: at most `per_address_per_day` files per contributor (the opaque id of the client
  address, `stream.recognition.feedback.ContributorIds`, which names the file) in 24 hours, counted
  from the folder itself, so restarts and instances sharing it agree;
- per folder: at most `max_bytes` in all; a donation that would pass it is refused.
"""

from __future__ import annotations

import calendar
import csv
import io
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.openset import NO_GESTURE
from model.personal import RELAXED, PlayerProfile
from stream.metrics import Metrics

log = logging.getLogger(__name__)

HEADER = [f"{axis}{i}" for i in range(1, 22) for axis in ("x", "y", "z")] + ["label"]
DAY_S = 24 * 3600.0
STAMP = "%Y%m%dT%H%M%S"  # UTC, the start of every donation's file name
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def donation_rows(
    profile: PlayerProfile, max_per_gesture: int = 0, max_samples: int = 0
) -> tuple[list[list], int]:
    """The CSV rows of a profile within the caps (0 = none) and how many samples were left out.
    Each gesture keeps samples spread evenly over its recording; the total cap trims the gestures
    with the most samples first."""
    kept: dict[str, list] = {}
    for gesture, frames in profile.landmarks.items():
        n = len(frames)
        if max_per_gesture and n > max_per_gesture:
            idx = np.linspace(0, n - 1, max_per_gesture).round().astype(int)
            frames = [frames[i] for i in idx]
        kept[gesture] = list(frames)
    if max_samples:
        while sum(len(f) for f in kept.values()) > max_samples:
            largest = max(kept, key=lambda g: len(kept[g]))
            kept[largest] = kept[largest][::2] if len(kept[largest]) > 1 else []
    total = sum(len(f) for f in profile.landmarks.values())
    rows = [
        [v for point in points for v in (point[0], point[1], "")] + [NO_GESTURE if g == RELAXED else g]
        for g, frames in kept.items()
        for points in frames
    ]
    return rows, total - len(rows)


def _stamped(name: str, fallback: float) -> float:
    """When a donation was written: the UTC stamp its name starts with (the box's own clock)."""
    try:
        return float(calendar.timegm(time.strptime(name[:15], STAMP)))
    except ValueError:
        return fallback


def _csv(rows: list[list]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


@dataclass
class DonationBox:
    """The donation folder with its caps (0 = no cap). `donate` blocks: call it from a thread."""

    directory: Path
    max_per_gesture: int = 0
    max_samples: int = 0
    per_address_per_day: int = 0
    max_bytes: int = 0
    metrics: Metrics | None = None
    clock: object = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _count(self, result: str, samples: int = 0, sample_result: str | None = None) -> None:
        if self.metrics is None:
            return
        self.metrics.donations.labels(result=result).inc()
        if samples:
            self.metrics.donation_samples.labels(result=sample_result or result).inc(samples)

    def donate(self, contributor: str, session_id: str, profile: PlayerProfile) -> Path | None:
        """Write the profile's capped samples as `<time>-<contributor>-<session>.csv`; None when there
        is nothing or the donation is refused (logged and counted)."""
        rows, capped = donation_rows(profile, self.max_per_gesture, self.max_samples)
        if not rows:
            return None
        if capped and self.metrics is not None:
            self.metrics.donation_samples.labels(result="capped").inc(capped)
        data = _csv(rows)
        who = _SAFE.sub("_", contributor)[:40] or "unknown"
        now = self.clock()  # type: ignore[operator]
        with self._lock:  # one process's donations one at a time: the checks and the write agree
            self.directory.mkdir(parents=True, exist_ok=True)
            used, recent = 0, 0
            for entry in self.directory.iterdir():
                if entry.suffix != ".csv":
                    continue
                try:
                    stat = entry.stat()
                except OSError:
                    continue  # removed meanwhile
                used += stat.st_size
                if f"-{who}-" in entry.name and now - _stamped(entry.name, stat.st_mtime) < DAY_S:
                    recent += 1
            if self.metrics is not None:
                self.metrics.donations_bytes.set(used)
            if self.per_address_per_day and recent >= self.per_address_per_day:
                log.warning("calibration donation refused: this address donated %d times in 24 h "
                            "(GM_DONATIONS_ADDRESS_PER_DAY=%d)", recent, self.per_address_per_day)
                self._count("refused_address", len(rows), "refused")
                return None
            if self.max_bytes and used + len(data) > self.max_bytes:
                log.warning("calibration donation refused: the donation folder %s holds %d bytes, %d more "
                            "would pass GM_DONATIONS_MAX_BYTES=%d", self.directory, used, len(data),
                            self.max_bytes)
                self._count("refused_full", len(rows), "refused")
                return None
            stamp = time.strftime(STAMP, time.gmtime(now))
            path = self.directory / f"{stamp}-{who}-{_SAFE.sub('_', session_id)}.csv"
            path.write_bytes(data)
            if self.metrics is not None:
                self.metrics.donations_bytes.set(used + len(data))
        self._count("stored", len(rows))
        return path
