"""Live drift: a bounded window of recent frames, compared with the served model's reference on a timer.

Per frame (event loop) `DriftMonitor.observe` only appends references that already exist (the hand's
landmarks, the predicted gesture, brightness and sharpness) to bounded deques: O(1), no copies, no
numpy. Every `GM_DRIFT_INTERVAL_S` the lifespan's task snapshots the window and a worker thread
computes features and `model.drift.compare` (a few ms), then the gauges are set. The reference
follows the served model: when the model handle swaps in a new version, its reference is loaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from model.classifier import ModelHandle
from model.drift import DriftReport, Reference, compare, feature_names, load_reference_for
from stream.metrics import Metrics

if TYPE_CHECKING:
    from model.recognizer import RecognitionResult

log = logging.getLogger(__name__)


class DriftMonitor:
    def __init__(self, metrics: Metrics, window: int, min_frames: int, tracking_uri: str | None) -> None:
        self.metrics = metrics
        self.min_frames = min_frames
        self.tracking_uri = tracking_uri
        self._hands: deque[tuple[Any, str]] = deque(maxlen=max(1, window))
        self._quality: deque[tuple[float, float]] = deque(maxlen=max(1, window))
        self._reference: Reference | None = None
        self._reference_key: tuple[str, str] | None = None
        self._names = feature_names()
        self.last: DriftReport | None = None

    def observe(self, result: RecognitionResult) -> None:
        stats = result.stats
        if stats is not None:  # landmarks from the client: no image quality to watch
            self._quality.append((stats.brightness, stats.sharpness))
        if result.hand_detail is not None and result.gesture is not None:
            self._hands.append((result.hand_detail, result.gesture))

    def _reference_for(self, info: Any) -> Reference | None:
        key = (str(info.source), str(info.version))
        if key != self._reference_key:
            self._reference = load_reference_for(info, self.tracking_uri)
            self._reference_key = key
            if self._reference is None:
                log.warning("model %s v%s has no drift reference; feature drift is not reported", *key)
        return self._reference

    def compute(
        self, info: Any, hands: list[tuple[Any, str]], quality: list[tuple[float, float]]
    ) -> DriftReport | None:
        """Blocking (worker thread): features of the window's hands vs the model's reference."""
        from model.features import FeatureError, features_from_xy

        reference = self._reference_for(info)
        if reference is None:
            return None
        xy = [np.asarray(h.normalized, dtype=np.float64)[:, :2] * (h.width, h.height) for h, _ in hands]
        try:
            features = features_from_xy(np.stack(xy)) if xy else np.empty((0, len(self._names)))
        except FeatureError:
            features, hands = np.empty((0, len(self._names))), []
        q = np.asarray(quality, dtype=np.float64).reshape(-1, 2)
        labels = [g for _, g in hands]
        return compare(reference, features, labels, q[:, 0], q[:, 1], min_hands=self.min_frames)

    async def update(self, models: Any) -> DriftReport | None:
        """Snapshot the window (event loop), compute in a thread, export the gauges."""
        if models is None:
            return None
        hands, quality = list(self._hands), list(self._quality)
        report = await asyncio.to_thread(self.compute, models.current.info, hands, quality)
        if report is not None:
            self.export(report)
        self.last = report
        return report

    def export(self, report: DriftReport) -> None:
        m = self.metrics
        m.drift_window_frames.labels(content="hand").set(report.hands)
        m.drift_window_frames.labels(content="all").set(report.frames)
        if report.features_compared:
            for name, psi, ks in zip(self._names, report.psi, report.ks, strict=True):
                m.feature_drift_psi.labels(feature=name).set(float(psi))
                m.feature_drift_ks.labels(feature=name).set(float(ks))
            for gesture, value in report.class_psi.items():
                m.class_drift_psi.labels(gesture=gesture).set(value)
        for kind, value in report.summary().items():
            m.drift_score.labels(kind=kind).set(value)


async def run_drift(
    monitor: DriftMonitor, models: Callable[[], ModelHandle | None], interval_s: float
) -> None:
    """Background task (owned by the lifespan); `models` gives the handle being served now."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await monitor.update(models())
        except Exception:  # keep monitoring; one bad window must not stop the task
            log.exception("drift computation failed")
