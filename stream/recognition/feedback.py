"""Players' corrections to the store: `FeedbackRecorder` writes each one (landmarks only, never
images) to the SQLAlchemy store (`model.feedback`) from its own thread, with a bounded number of
writes pending. What a correction is made of (consent, the recent hand frames, the gesture move that
may be undone) lives with the player (stream.sessions.player); the `undo` and `consent` messages
are handled with the other player messages (stream.web.player_messages).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from model.feedback import FeedbackEvent, FeedbackStore
from stream.metrics import Metrics

log = logging.getLogger(__name__)

MAX_PENDING_WRITES = 32


class FeedbackRecorder:
    """Writes corrections to the store from one worker thread; at most MAX_PENDING_WRITES queued."""

    def __init__(self, url: str, max_events: int, metrics: Metrics | None = None) -> None:
        self.url = url
        self.max_events = max_events
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
        self._store: FeedbackStore | None = None  # opened in the worker thread on first write
        self._pending = 0

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.feedback.labels(result=result).inc()

    def submit(self, event: FeedbackEvent) -> bool:
        """Queue one event (event loop); False when too many writes are pending (dropped, counted)."""
        if self._pending >= MAX_PENDING_WRITES:
            self._count("dropped")
            return False
        self._pending += 1
        future = self._executor.submit(self._write, event)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._done, f))
        return True

    def _write(self, event: FeedbackEvent) -> int:
        if self._store is None:
            self._store = FeedbackStore(self.url, max_events=self.max_events)
        return self._store.add(event)

    def _done(self, future: Future[int]) -> None:
        self._pending -= 1
        if future.exception() is not None:
            log.error("feedback could not be stored", exc_info=future.exception())
            self._count("error")
        else:
            self._count("stored")

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._store is not None:
            self._store.close()
