"""Players' corrections to the store: `FeedbackRecorder` writes each one (landmarks only, never
images) to the SQLAlchemy store (`model.feedback`) from its own thread, with a bounded number of
writes pending. What a correction is made of (consent, the recent hand frames, the gesture move that
may be undone) lives with the player (stream.sessions.player); the `undo` and `consent` messages
are handled with the other player messages (stream.web.player_messages).

Consent is not the only check (docs/security.md, "Feedback, retraining and donations"): every
correction carries an opaque contributor id (`ContributorIds`: a keyed hash of the client address,
never the address) and is admitted only within a per-game and a per-address rate
(`GM_FEEDBACK_GAME_PER_MIN`, `GM_FEEDBACK_ADDRESS_PER_HOUR`); the store itself caps rows per game and
per contributor and, when full, prunes the largest contributor first (`model.feedback.FeedbackStore`).
Every refusal and eviction is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from model.feedback import Added, FeedbackEvent, FeedbackRefused, FeedbackStore
from stream.metrics import Metrics

log = logging.getLogger(__name__)

MAX_PENDING_WRITES = 32
KEY_FILE = "contributor.key"


class RateLimit(Protocol):
    """`stream.edge.limits.KeyedRateLimiter`'s shape (injected: recognition does not import edge)."""

    def allow(self, key: str) -> bool: ...


class ContributorIds:
    """Client address -> opaque contributor id: `a-` + 24 hex digits of HMAC-SHA256(key, address).

    The address should already be a limiter key (`stream.edge.limits.address_key`: IPv6 grouped by
    /64), so one host is one contributor. Stable across restarts and instances that share the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the contributor key needs at least 16 bytes")
        self._key = key

    @classmethod
    def from_secret_or_file(cls, secret: str | None, data_dir: str | Path) -> ContributorIds:
        """`GM_CONTRIBUTOR_SECRET` when set, else a random key kept in <data_dir>/contributor.key (0600)."""
        if secret:
            return cls(hashlib.sha256(secret.encode()).digest())
        path = Path(data_dir).expanduser() / KEY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        return cls(bytes.fromhex(path.read_text().strip()))

    def of(self, address: str) -> str:
        return "a-" + hmac.new(self._key, address.encode(), hashlib.sha256).hexdigest()[:24]


class _Unlimited:
    def allow(self, key: str) -> bool:
        return True


class FeedbackRecorder:
    """Writes corrections to the store from one worker thread; at most MAX_PENDING_WRITES queued.

    `game_rate` / `address_rate` are keyed rate limits (by session key / contributor id);
    `max_per_game` / `max_per_contributor` are the store's totals (0 = none)."""

    def __init__(
        self,
        url: str,
        max_events: int,
        metrics: Metrics | None = None,
        *,
        contributors: ContributorIds | None = None,
        game_rate: RateLimit | None = None,
        address_rate: RateLimit | None = None,
        max_per_game: int = 0,
        max_per_contributor: int = 0,
    ) -> None:
        self.url = url
        self.max_events = max_events
        self.max_per_game = max_per_game
        self.max_per_contributor = max_per_contributor
        self.metrics = metrics
        # `is None`, not `or`: a limiter with no keys yet has len() 0 and is falsy.
        self.contributors = ContributorIds(secrets.token_bytes(32)) if contributors is None else contributors
        self._game_rate: RateLimit = _Unlimited() if game_rate is None else game_rate
        self._address_rate: RateLimit = _Unlimited() if address_rate is None else address_rate
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
        self._store: FeedbackStore | None = None  # opened in the worker thread on first write
        self._pending = 0

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.feedback.labels(result=result).inc()

    def contributor_of(self, address: str) -> str:
        return self.contributors.of(address)

    def submit(self, event: FeedbackEvent, address: str | None = None) -> bool:
        """Queue one event (event loop); False when it is refused by a rate cap or too many writes are
        pending (not stored, counted). `address` (a limiter key, never stored) names the contributor."""
        if address is not None:
            event = dataclasses.replace(event, contributor=self.contributor_of(address))
        if event.session_key and not self._game_rate.allow(event.session_key):
            self._count("refused_game_rate")
            return False
        if not self._address_rate.allow(event.source):
            self._count("refused_address_rate")
            return False
        if self._pending >= MAX_PENDING_WRITES:
            self._count("dropped")
            return False
        self._pending += 1
        future = self._executor.submit(self._write, event)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._done, f))
        return True

    def _write(self, event: FeedbackEvent) -> Added:
        if self._store is None:
            self._store = FeedbackStore(self.url, max_events=self.max_events,
                                        max_per_contributor=self.max_per_contributor,
                                        max_per_session=self.max_per_game)
        return self._store.add_event(event)

    def _done(self, future: Future[Added]) -> None:
        self._pending -= 1
        error = future.exception()
        if isinstance(error, FeedbackRefused):
            log.info("correction not stored: %s", error)
            self._count(f"refused_{error.reason}")
        elif error is not None:
            log.error("feedback could not be stored", exc_info=error)
            self._count("error")
        else:
            self._count("stored")
            if self.metrics is not None:
                for reason, n in future.result().evicted.items():
                    self.metrics.feedback_evicted.labels(reason=reason).inc(n)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._store is not None:
            self._store.close()
