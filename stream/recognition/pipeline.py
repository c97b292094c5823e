"""The shared frame pool: one bounded thread pool for every session, latest frame wins per session.

Recognition is CPU work (decode, MediaPipe, classifier) that must never run on the event loop.
All sessions share one `ThreadPoolExecutor` (MediaPipe and OpenCV release the GIL, so threads scale
with cores). Each session gets a `FrameLane`: at most one of its jobs is in the pool and at most one
waits behind it. A frame arriving while another is pending replaces it (the old one is dropped and
counted as `superseded`), so a slow server shows the newest frame instead of building up lag, and
nothing queues without bound. A job may hand its work on (returning a `concurrent.futures.Future` or
an asyncio one, e.g. phase two in `stream.recognition.batching`): the lane then awaits that too before
its next job.
All methods are called from the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from model.openset import NO_GESTURE
from stream.metrics import Metrics
from stream.recognition.batching import ClassifyBatcher

R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass
class _Job(Generic[R]):
    run: Callable[[], R]
    on_done: Callable[[R | BaseException], Awaitable[None]]
    inline: bool = False  # run on the event loop: cheap, it only hands its work on (returns a Future)


class FramePipeline:
    """One bounded thread pool shared by all sessions (`workers` threads), and the classifier's
    batches (`classify`: at most `classify_batch` hands a pass, `classify_capacity` waiting)."""

    def __init__(
        self, workers: int, metrics: Metrics | None = None, *, classify_batch: int = 32,
        classify_capacity: int = 1024, classify_linger_s: float = 0.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frames")
        self.classify = ClassifyBatcher(
            classify_batch, classify_capacity, metrics, linger_s=classify_linger_s
        )
        self._counts_lock = threading.Lock()
        self._in_flight = 0  # running in a pool thread
        self._backlog = 0  # submitted, waiting for a free thread
        self._lanes: set[FrameLane] = set()
        self._closed = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def backlog(self) -> int:
        return self._backlog

    @property
    def closed(self) -> bool:
        return self._closed

    def lane(self) -> FrameLane:
        if self._closed:
            raise RuntimeError("FramePipeline is shut down")
        lane = FrameLane(self)
        self._lanes.add(lane)
        return lane

    async def run(self, fn: Callable[[], R]) -> R:
        """Run one job in the pool outside any lane (e.g. POST /predict) and await its result."""
        if self._closed:
            raise RuntimeError("FramePipeline is shut down")
        return await self._submit(fn)

    def _submit(self, fn: Callable[[], R]) -> asyncio.Future[R]:
        self._count(backlog=+1)
        try:
            return asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)
        except BaseException:
            self._count(backlog=-1)
            raise

    def _call(self, fn: Callable[[], R]) -> R:
        self._count(backlog=-1, in_flight=+1)
        try:
            return fn()
        finally:
            self._count(in_flight=-1)

    def _count(self, backlog: int = 0, in_flight: int = 0) -> None:
        with self._counts_lock:
            self._backlog += backlog
            self._in_flight += in_flight
            if self.metrics is not None:
                self.metrics.pool_backlog.set(self._backlog)
                self.metrics.pool_in_flight.set(self._in_flight)

    def _dropped(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.frames_dropped.labels(reason=reason).inc()

    def _forget(self, lane: FrameLane) -> None:
        self._lanes.discard(lane)

    async def shutdown(self) -> None:
        """Stop accepting jobs, drop pending ones, let in-flight jobs (and their on_done) finish."""
        if self._closed:
            return
        self._closed = True
        lanes = list(self._lanes)
        await asyncio.gather(*(lane.close() for lane in lanes), return_exceptions=True)
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(self.classify.close)


class FrameLane:
    """One session's view of the pool: one job in flight, one pending, arrival order."""

    def __init__(self, pipeline: FramePipeline) -> None:
        self._pipeline = pipeline
        self._pending: _Job[Any] | None = None
        self._driver: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0  # jobs this lane dropped because a newer one replaced them

    @property
    def busy(self) -> bool:
        return self._driver is not None and not self._driver.done()

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(
        self, job: Callable[[], R], on_done: Callable[[R | BaseException], Awaitable[None]], *,
        inline: bool = False,
    ) -> bool:
        """Queue `job`; False when it replaced an older pending job (whose on_done is never called).
        `inline`: a job cheap enough for the event loop that hands its work on (returns a Future), so
        it skips the pool's thread hop (edge mode's landmarks go straight to the classifier).

        After `close()` a job is refused: False, not run, not counted.
        """
        if self._closed or self._pipeline.closed:
            return False
        new = _Job(job, on_done, inline)
        if self.busy:
            replaced = self._pending is not None
            self._pending = new
            if replaced:
                self.dropped += 1
                self._pipeline._dropped("superseded")
            return not replaced
        self._driver = asyncio.get_running_loop().create_task(self._drive(new), name="frame-lane")
        return True

    async def _drive(self, job: _Job[Any]) -> None:
        # One driver task per burst: runs the job (and the work it handed on), starts the pending one
        # (if any) as soon as that is settled, then reports the finished job - so callbacks run in
        # arrival order too.
        current: _Job[Any] | None = job
        future = self._start(current)
        while current is not None:
            try:
                outcome: Any = await future
                if isinstance(outcome, asyncio.Future):  # the job handed its work on: its real outcome
                    outcome = await outcome
                elif isinstance(outcome, Future):
                    outcome = await asyncio.wrap_future(outcome)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # contained: a failing job never kills the lane
                outcome = exc
            following, self._pending = self._pending, None
            if following is not None:
                future = self._start(following)
            try:
                await current.on_done(outcome)
            except Exception:
                log.exception("frame on_done callback failed")
            if following is None:  # a job offered while on_done ran (the lane looked busy) runs now
                following, self._pending = self._pending, None
                if following is not None:
                    future = self._start(following)
            current = following

    def _start(self, job: _Job[Any]) -> asyncio.Future[Any]:
        if not job.inline:
            return self._pipeline._submit(job.run)
        started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            started.set_result(job.run())
        except Exception as exc:  # reported to on_done like a pool job's failure
            started.set_exception(exc)
        return started

    async def close(self) -> None:
        """Refuse new jobs, drop the pending one, wait for the in-flight job and its on_done."""
        self._closed = True
        self._pending = None
        driver = self._driver
        if driver is not None and not driver.done():
            await asyncio.wait([driver])  # never raises the driver's outcome; cancelling close() still works
        self._pipeline._forget(self)


def observe_recognition(metrics: Metrics, result: Any) -> None:
    """Record one recognised frame (a `model.recognizer.RecognitionResult`) in the app's metrics."""
    metrics.frames_processed.inc()
    for stage, ms in result.stages_ms.items():
        metrics.stage_seconds.labels(stage=stage).observe(ms / 1000.0)
    stats = result.stats
    if stats is not None:  # None: landmarks from the client (edge mode), no image to describe
        metrics.frame_bytes.observe(stats.bytes)
        metrics.frame_width.observe(stats.width)
        metrics.frame_height.observe(stats.height)
        metrics.frame_brightness.observe(stats.brightness)
        metrics.frame_contrast.observe(stats.contrast)
        metrics.frame_sharpness.observe(stats.sharpness)
    metrics.frames_hand.labels(detected="true" if result.hand else "false").inc()
    if result.gesture is not None:
        metrics.gestures.labels(gesture=result.gesture).inc()  # no_gesture included: a hand, no gesture
        if result.gesture != NO_GESTURE:  # its confidence is a novelty share, not a class probability
            metrics.prediction_confidence.observe(result.confidence)


def observe_frame_error(metrics: Metrics, code: str) -> None:
    """Record a frame rejected before recognition (`FrameError.code` is a closed set)."""
    metrics.frames_invalid.labels(reason=code).inc()
