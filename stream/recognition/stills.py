"""Recognition of single images (`POST /predict`): MediaPipe in static-image mode (no stream to
track), a small pool of such trackers (one per thread at most), and the streams' own recognition
path (model.recognizer.observe_frame) minus tracking and smoothing.

Uploads run in their own small pool (`max(1, workers - 1)` threads, `PredictService.slots`), not in
the players' frame pool, at a lower CPU priority (nice +10 per thread on Linux; MediaPipe's own
threads, made from them, inherit it): when the cores are contended the players' frames win, and
predictions get what is left. The web layer never submits more jobs than there are threads
(stream.edge.admission.FairGate), so this pool's queue stays empty."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from model.classifier import ModelHandle
from model.landmarks import Hand, HandTracker, detect_padded
from model.recognizer import RecognitionResult, RecognizerConfig, recognise_image
from model.schemes import counting_table
from stream.settings import Settings

R = TypeVar("R")
UPLOAD_NICENESS = 10  # CPU weight ~1/10 of a player's frame thread when both want a core


def _lower_priority() -> None:
    """Thread initializer: this thread (and any it starts) yields the CPU to the players' frames."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: run as is
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + UPLOAD_NICENESS)


class StaticTrackerPool:
    """Idle static-image-mode HandTrackers; at most one per pool thread is ever created."""

    def __init__(self, factory: Callable[[], HandTracker]) -> None:
        self._factory = factory
        self._idle: queue.SimpleQueue[HandTracker] = queue.SimpleQueue()
        self._closed = False

    def acquire(self) -> HandTracker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._factory()  # bounded by the pool size: only pool threads call this

    def release(self, tracker: HandTracker) -> None:
        if self._closed:
            tracker.close()
        else:
            self._idle.put(tracker)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class PredictService:
    """What /predict holds between requests (built by the lifespan): the static-image trackers, and
    the recognition job it runs in the shared pool. Admission and fair turns in the pool are the
    web layer's (stream.edge.admission.FairGate on `Services.predict_gate`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.trackers = StaticTrackerPool(
            lambda: HandTracker(
                model_complexity=settings.model_complexity,
                min_detection_confidence=settings.min_detection_confidence,
                static_image_mode=True,
            )
        )
        self.slots = max(1, settings.worker_count - 1)
        self._executor = ThreadPoolExecutor(
            self.slots, thread_name_prefix="predict", initializer=_lower_priority
        )
        self._config = RecognizerConfig.from_settings(settings, static_image_mode=True)
        self._counting = counting_table(settings.counting_map)

    def recognise(self, image: bytes, models: ModelHandle, scheme: str) -> RecognitionResult:
        """Blocking (runs in the pool): the same path as a stream's frames, minus tracking and smoothing."""

        def detect(rgb: np.ndarray) -> Hand | None:
            tracker = self.trackers.acquire()
            try:
                # A hand filling the whole picture is missed by the palm detector: retry on padded copies.
                hand, _ = detect_padded(tracker, rgb, self.settings.predict_pad)
            finally:
                self.trackers.release(tracker)
            return hand

        return recognise_image(image, self._config, detect, models.current, scheme, self._counting)

    async def run(self, job: Callable[[], R]) -> R:
        """Run one upload's job (blocking: parse + recognise) in the uploads' own low-priority pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def close(self) -> None:
        """Finish running jobs, then release the trackers (the lifespan's shutdown, from a thread)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.trackers.close()
