"""Per-player calibration: a few seconds of a player's own gestures adapt recognition to their hand.

During the optional calibration step the player shows each control gesture (and then a relaxed
hand) for a few seconds; the features of every frame where a hand was found are kept here, in
memory, with the player's session (never images; deleted with the session unless the player
donates them). Recognition then applies a nearest-neighbour correction on top of the global model:

* the frame's standardised features are compared with the player's own samples;
* when the nearest sample is closer than `radius` and most of the `k` nearest samples agree, the
  answer is that sample's gesture (a relaxed-hand sample gives `no_gesture`), with the share of
  agreeing neighbours as confidence;
* otherwise the global model's prediction stands.

So a player whose `three` the global model reads as `four` gets `three`; a player's habitual resting
hand stops being read as a gesture; everything not calibrated behaves as before. The gain measured on
held-out people (leave-one-source-out) is in docs/recognition.md (`python -m benchmarks.calibration_gain`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.openset import NO_GESTURE

MAX_SAMPLES_PER_GESTURE = 60  # ~4 s at 15 fps: bounded memory per session (60 x 307 floats each)
MAX_GESTURES = 12
RELAXED = "relaxed"  # calibration prompt for a resting hand: answered no_gesture afterwards
DEFAULT_RADIUS = 6.0  # standardised feature units, 307 of them (benchmarks/calibration_gain.py)
DEFAULT_K = 5


@dataclass
class PlayerProfile:
    """One player's calibration samples (`landmark_features` vectors by prompted gesture).

    `recording` names the gesture being shown now (set from the event loop, read by the frame's pool
    thread); `version` changes with every sample so adapters are rebuilt only when needed. Raw
    features are kept (not standardised ones), so a model swapped in later standardises them itself.
    """

    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    landmarks: dict[str, list[list[list[float]]]] = field(default_factory=dict)  # pixel x,y; donation only
    recording: str | None = None
    donate: bool = False
    version: int = 0
    _cached: tuple[tuple[int, int], PlayerAdapter | None] | None = field(default=None, init=False, repr=False)
    # Frames add samples in a pool thread while messages clear or count them on the event loop.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def add(self, gesture: str, features: np.ndarray, landmarks: list[list[float]] | None = None) -> bool:
        """Keep one frame's sample for `gesture`; False once a cap (per gesture, gestures) is reached."""
        with self._lock:
            return self._add(gesture, features, landmarks)

    def _add(self, gesture: str, features: np.ndarray, landmarks: list[list[float]] | None) -> bool:
        if gesture not in self.samples and len(self.samples) >= MAX_GESTURES:
            return False
        rows = self.samples.setdefault(gesture, [])
        if len(rows) >= MAX_SAMPLES_PER_GESTURE:
            return False
        rows.append(np.asarray(features, dtype=np.float32).reshape(-1))
        if landmarks is not None:
            self.landmarks.setdefault(gesture, []).append(landmarks)
        self.version += 1
        return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {g: len(rows) for g, rows in self.samples.items()}

    def truncate(self, gesture: str, keep: int) -> None:
        """Keep only the first `keep` samples of `gesture` (a calibration step that was refused)."""
        with self._lock:
            for table in (self.samples, self.landmarks):
                rows = table.get(gesture)
                if rows is not None:
                    del rows[keep:]
                    if not rows:
                        del table[gesture]
            self.version += 1

    def clear(self) -> None:
        with self._lock:
            self.samples.clear()
            self.landmarks.clear()
            self.recording = None
            self.version += 1

    def adapter_for(self, classifier: Any) -> PlayerAdapter | None:
        """The adapter for `classifier` (rebuilt only when samples or the model changed)."""
        key = (self.version, id(classifier))
        cached = self._cached
        if cached is None or cached[0] != key:
            cached = self._cached = (key, self.adapter(classifier.scaled))
        return cached[1]

    def record(self, features: np.ndarray, landmarks: list[list[float]] | None) -> None:
        """A frame seen while `recording` is set: kept as a sample of that gesture."""
        gesture = self.recording
        if gesture is not None:
            self.add(gesture, features, landmarks)

    def adapter(self, scale: Callable[[np.ndarray], np.ndarray], radius: float = DEFAULT_RADIUS,
                k: int = DEFAULT_K) -> PlayerAdapter | None:
        """The correction over these samples, standardised by `scale` (the classifier's `scaled`)."""
        with self._lock:
            groups = [(g, list(rows)) for g, rows in self.samples.items() if rows]
        if not groups:
            return None
        X = scale(np.vstack([np.stack(rows) for _, rows in groups]))
        y = np.array([g for g, rows in groups for _ in rows])
        return PlayerAdapter(np.asarray(X, dtype=np.float32), y, radius, k)


@dataclass(frozen=True)
class PlayerAdapter:
    """Nearest-neighbour correction over one player's calibration samples (immutable snapshot)."""

    X: np.ndarray  # (n, D) standardised features
    y: np.ndarray  # (n,) gesture names (RELAXED for the resting hand)
    radius: float = DEFAULT_RADIUS
    k: int = DEFAULT_K

    def vote(self, scaled: np.ndarray) -> tuple[str, float] | None:
        """(gesture, share of agreeing neighbours) when the player's own samples decide, else None."""
        d = np.sqrt(np.maximum(((self.X - np.asarray(scaled, dtype=np.float32)) ** 2).sum(axis=1), 0.0))
        order = np.argsort(d)[: self.k]
        if d[order[0]] > self.radius:
            return None
        near = self.y[order[d[order] <= self.radius]]
        labels, counts = np.unique(near, return_counts=True)
        best = int(np.argmax(counts))
        share = float(counts[best] / len(near))
        if share <= 0.5:
            return None
        gesture = str(labels[best])
        return (NO_GESTURE if gesture == RELAXED else gesture), share
