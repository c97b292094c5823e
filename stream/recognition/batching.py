"""Phase two of recognition for every player at once: one classifier pass over many players' hands.

A frame's classification alone reads the whole model (the SVM's ~12 MB of support vectors) and, on a
busy server, reads it from memory rather than cache: ~1.5-3 ms of a frame's CPU, and most of an edge
player's landmarks message. So the shared pool does phase one (decode, landmarks, features: per
player) and hands the observation to `ClassifyBatcher`, whose own thread classifies whatever has
gathered in one pass (`model.recognizer.recognise_many`), then runs each player's smoothing.

Under load, hands gather while the previous batch runs, so the batch grows with the load and each
hand's share of the model's cost falls. A hand waits on purpose only while another player's phase one
is already running in the pool (it will join within a few ms), and at most `linger_s`; a lone hand
is classified at once (docs/decisions/0025-classify-in-batches.md).

Bounded: each session's FrameLane has at most one observation here (it awaits it before starting the
next), so the queue holds at most one per session; `capacity` is a hard cap on top.

A hand queued for a session's lane (`phase_one(..., loop=)`) gets an asyncio future of that event loop:
a finished batch settles all of its futures in one callback on the loop, instead of a thread-safe
future, a lock and a wake-up of the loop per hand (edge mode sends 15 messages a second per player).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from model.recognizer import Observation, RecognitionResult, Recognizer, recognise_many
from stream.metrics import Metrics

log = logging.getLogger(__name__)


class BatcherStopped(RuntimeError):
    """The server is shutting down: the observation was not classified."""


Promise = Future[RecognitionResult] | asyncio.Future[RecognitionResult]  # what a queued hand's caller awaits
Settled = tuple[Promise, "RecognitionResult | BaseException"]


@dataclass
class _Work:
    recognizer: Recognizer
    observation: Observation
    now: float
    future: Promise


def _settle(future: Promise, outcome: RecognitionResult | BaseException) -> None:
    if future.done():  # an asyncio future its lane cancelled meanwhile: nobody waits for it
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _settle_all(settled: Sequence[Settled]) -> None:
    for future, outcome in settled:
        _settle(future, outcome)


def _deliver(settled: Sequence[Settled]) -> None:
    """Settle futures from any thread: a thread-safe future at once, an asyncio future's batch in one
    callback on its loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Settled]] = {}
    for future, outcome in settled:
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        else:
            _settle(future, outcome)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is left to tell
            loop.call_soon_threadsafe(_settle_all, items)


class ClassifyBatcher:
    """One thread, a bounded queue, batches of at most `max_batch` observations."""

    def __init__(
        self, max_batch: int, capacity: int, metrics: Metrics | None = None, *, linger_s: float = 0.0
    ) -> None:
        if max_batch < 1 or capacity < 1 or linger_s < 0:
            raise ValueError("max_batch and capacity must be >= 1, linger_s >= 0")
        self.max_batch = max_batch
        self.capacity = capacity
        self.linger_s = linger_s
        self.metrics = metrics
        self._queue: deque[_Work] = deque()
        self._on_the_way = 0  # phase ones running in the pool: hands that will be here in a moment
        self._ready = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="classify", daemon=True)
        self._thread.start()

    def submit(
        self, recognizer: Recognizer, observation: Observation, now: float
    ) -> Future[RecognitionResult]:
        """Queue one observation (any thread); its future gets the result or the exception."""
        future: Future[RecognitionResult] = Future()
        with self._ready:
            self._queue_locked(recognizer, observation, now, future)
        return future

    def _queue_locked(
        self, recognizer: Recognizer, observation: Observation, now: float, future: Promise
    ) -> None:
            if self._stopping:
                _deliver([(future, BatcherStopped("the server is shutting down"))])
            elif len(self._queue) >= self.capacity:
                _deliver([(future, RuntimeError(f"classify queue full ({self.capacity})"))])
            else:
                self._queue.append(_Work(recognizer, observation, now, future))
                self._ready.notify()

    def phase_one(
        self, recognizer: Recognizer, observe: Callable[[], Observation], now: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Callable[[], Promise]:
        """A pool job: `observe` in the pool thread, then this batcher; the job returns the future (one
        of `loop`'s when given, settled there)."""

        def job() -> Promise:
            with self._ready:
                self._on_the_way += 1
            observation: Observation | None = None
            try:
                observation = observe()
            finally:  # a bad frame (FrameError) is the lane's outcome; it no longer keeps a batch waiting
                with self._ready:
                    self._on_the_way -= 1
                    future: Promise = Future() if loop is None else asyncio.Future(loop=loop)
                    if observation is not None:
                        self._queue_locked(recognizer, observation, now, future)
                    self._ready.notify()  # one fewer on its way, whether it joined or not
            return future

        return job

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._classify(batch)
            # Let go of the finished batch before waiting for the next one: an idle thread must not
            # keep the last players' recognizers (or a session that has ended since) alive.
            del batch

    def _next_batch(self) -> list[_Work] | None:
        """The hands gathered for the next pass (waiting as decided above); None once stopping."""
        with self._ready:
            while not self._queue and not self._stopping:
                self._ready.wait()
            if not self._queue:
                return None
            deadline = time.monotonic() + self.linger_s
            while (self._on_the_way and len(self._queue) < self.max_batch and not self._stopping
                   and (left := deadline - time.monotonic()) > 0):
                self._ready.wait(left)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _classify(self, batch: list[_Work]) -> None:
        try:
            outcomes = recognise_many([(w.recognizer, w.observation, w.now) for w in batch])
        except Exception as exc:  # the model itself failed: every hand of the batch reports it
            log.exception("classifying a batch of %d failed", len(batch))
            outcomes = [exc] * len(batch)
        _deliver([(work.future, outcome) for work, outcome in zip(batch, outcomes, strict=True)])
        if self.metrics is not None:
            self.metrics.classify_batch.observe(len(batch))

    def close(self) -> None:
        """Classify what is queued, then stop the thread (blocking: call it off the event loop)."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        self._thread.join()
