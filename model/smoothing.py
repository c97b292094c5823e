"""Temporal smoothing: turn a noisy per-frame direction into deliberate moves.

Rules (pure, time passed in; see docs/recognition.md):
- A *hold* is a run of frames with the same direction. It fires once it has `hold_frames` frames, or
  has lasted `hold_ms` with at least 2 frames (whichever comes first), and the mean confidence of its
  last `hold_frames` frames is >= `min_confidence`.
- While it is still held, it fires again every `repeat_ms`.
- No hand, or a neutral gesture (no direction), ends the hold: the next gesture must be held afresh.
- A low-confidence frame (< `min_confidence`) can neither start a hold nor interrupt one: a one-frame
  misclassification does not re-arm. Inside a hold of its own direction it counts and pulls the mean.
- A confident frame with another direction starts a new hold (re-arms).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from maze import Direction


@dataclass(frozen=True)
class SmoothingConfig:
    hold_frames: int = 3
    hold_ms: float = 180.0
    min_confidence: float = 0.55
    repeat_ms: float = 600.0

    def __post_init__(self) -> None:
        if self.hold_frames < 1:
            raise ValueError("hold_frames must be >= 1")
        if self.hold_ms < 0 or self.repeat_ms <= 0:
            raise ValueError("hold_ms must be >= 0 and repeat_ms > 0")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("min_confidence must be in [0, 1]")

    @classmethod
    def from_settings(cls, settings: Any) -> SmoothingConfig:
        """From any object with hold_frames, hold_ms, min_confidence, repeat_ms (e.g. Settings)."""
        return cls(
            hold_frames=settings.hold_frames,
            hold_ms=settings.hold_ms,
            min_confidence=settings.min_confidence,
            repeat_ms=settings.repeat_ms,
        )


@dataclass
class _Hold:
    direction: Direction
    started: float
    frames: int = 0
    confidences: deque[float] = field(default_factory=deque)
    last_fired: float | None = None


class Smoother:
    """Feed every processed frame to `update`; it returns the direction to move, or None."""

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        self._hold: _Hold | None = None

    @property
    def holding(self) -> Direction | None:
        return self._hold.direction if self._hold else None

    def reset(self) -> None:
        self._hold = None

    def update(
        self, gesture: str | None, confidence: float, direction: Direction | str | None, now: float
    ) -> Direction | None:
        """One frame's classification at time `now` (seconds, monotonic)."""
        if gesture is None or direction is None:
            self._hold = None  # no hand or a neutral gesture: re-arm
            return None
        direction = Direction(direction)
        cfg = self.config
        hold = self._hold
        if hold is None or hold.direction != direction:
            if confidence < cfg.min_confidence:
                return None  # too unsure to start a hold or to break the current one
            hold = self._hold = _Hold(direction=direction, started=now)
        hold.frames += 1
        hold.confidences.append(confidence)
        if len(hold.confidences) > cfg.hold_frames:
            hold.confidences.popleft()
        if sum(hold.confidences) / len(hold.confidences) < cfg.min_confidence:
            return None
        if hold.last_fired is None:
            held_long = hold.frames >= 2 and (now - hold.started) * 1000.0 >= cfg.hold_ms
            if hold.frames >= cfg.hold_frames or held_long:
                hold.last_fired = now
                return direction
            return None
        if (now - hold.last_fired) * 1000.0 >= cfg.repeat_ms:
            hold.last_fired = now
            return direction
        return None
