"""Rate and connection limits: pure, clock-injected, bounded-memory building blocks.

API (all classes take `clock: Callable[[], float]`, default `time.monotonic`; nothing here does I/O):

- `TokenBucket(rate, burst, clock=time.monotonic)`: `.allow(cost=1.0) -> bool` takes `cost` tokens if
  available; `.tokens -> float`; `.retry_after(cost=1.0) -> float` seconds until `cost` tokens exist.
  Refills at `rate` tokens/s up to `burst`; starts full.
- `FrameGate(rate, burst=None, clock=time.monotonic)`: the per-connection frame cap. `.admit() ->
  Admission(accepted: bool, notify: bool)`; `.dropped -> int`. `notify` is True exactly once per
  connection (the first dropped frame), so the client is told `rate_limited` once, not per frame.
  `burst` defaults to `default_frame_burst(rate)`. `rate <= 0` disables the cap.
- `ConnectionLimiter(max_per_key)`: open connections per client address. `.acquire(key) -> bool`,
  `.release(key)`, `.count(key) -> int`, `len(limiter)` = keys with open connections, and
  `with limiter.hold(key) as admitted: ...` (releases on exit only if it acquired). Memory is bounded by
  the number of open connections: a key is deleted when its count drops to 0.
- `KeyedRateLimiter(limit, per_s, clock=time.monotonic, max_keys=10_000, burst=None)`: one token
  bucket per client address (`limit` events per `per_s` seconds, bursting to `burst`, default `limit`),
  e.g. session creation per minute.
  `.allow(key) -> bool`, `.retry_after(key) -> float` (for a `Retry-After` header), `len(limiter)`.
  Memory is bounded by `max_keys` (least recently used key evicted first; idle buckets are full, so
  evicting them loses nothing).
- `address_key(host) -> str`: the key for a client address. IPv6 addresses are grouped by /64 (one
  host usually owns a whole /64, so per-address limits would otherwise be trivially sidestepped);
  IPv4-mapped IPv6 becomes plain IPv4; None/empty becomes "unknown".
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Clock = Callable[[], float]


class TokenBucket:
    """Classic token bucket: `rate` tokens per second, at most `burst` stored, starts full."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if rate < 0 or burst <= 0:
            raise ValueError(f"need rate >= 0 and burst > 0, got rate={rate} burst={burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        # A clock that steps backwards must not mint tokens: time only counts past the latest reading.
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    @property
    def full(self) -> bool:
        return self.tokens >= self.burst

    def allow(self, cost: float = 1.0) -> bool:
        """Take `cost` tokens if the bucket holds them; never goes negative (refusals are free)."""
        self._refill()
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are available (0 if they are now; inf if they never will be)."""
        missing = cost - self.tokens
        if missing <= 0:
            return 0.0
        if self.rate == 0 or cost > self.burst:
            return math.inf
        return missing / self.rate


def default_frame_burst(rate: float) -> float:
    """Half a second of frames (at least 2): absorbs network jitter, not a flood."""
    return max(2.0, rate / 2.0)


@dataclass(frozen=True, slots=True)
class Admission:
    accepted: bool
    notify: bool  # True once per gate: the first refused frame (tell the client `rate_limited`).


_ACCEPT = Admission(True, False)
_DROP = Admission(False, False)
_DROP_NOTIFY = Admission(False, True)


class FrameGate:
    """Per-connection frame-rate cap: a token bucket plus a dropped count and a tell-once flag."""

    __slots__ = ("_bucket", "_notified", "dropped")

    def __init__(self, rate: float, burst: float | None = None, clock: Clock = time.monotonic) -> None:
        self._bucket = None if rate <= 0 else TokenBucket(rate, burst or default_frame_burst(rate), clock)
        self._notified = False
        self.dropped = 0

    def admit(self) -> Admission:
        if self._bucket is None or self._bucket.allow():
            return _ACCEPT
        self.dropped += 1
        if self._notified:
            return _DROP
        self._notified = True
        return _DROP_NOTIFY


class ConnectionLimiter:
    """Counts open connections per key; refuses beyond `max_per_key` (<= 0 means unlimited)."""

    def __init__(self, max_per_key: int) -> None:
        self.max_per_key = max_per_key
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        current = self._open.get(key, 0)
        if 0 < self.max_per_key <= current:
            return False
        self._open[key] = current + 1
        return True

    def release(self, key: str) -> None:
        current = self._open.get(key, 0)
        if current <= 1:
            # Deleting at zero is what keeps memory bounded by the number of open connections.
            self._open.pop(key, None)
        else:
            self._open[key] = current - 1

    def count(self, key: str) -> int:
        return self._open.get(key, 0)

    @property
    def total(self) -> int:
        return sum(self._open.values())

    def __len__(self) -> int:
        return len(self._open)

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """`with limiter.hold(ip) as admitted:` — releases on exit only when it was admitted."""
        admitted = self.acquire(key)
        try:
            yield admitted
        finally:
            if admitted:
                self.release(key)


class KeyedRateLimiter:
    """A token bucket per key (`limit` events per `per_s` seconds), with at most `max_keys` buckets.

    At `max_keys` the least recently used bucket is forgotten. That is usually an idle, full bucket
    (forgetting it loses nothing: a new one starts full too); at worst an attacker juggling more than
    `max_keys` addresses gets a fresh burst back — memory stays bounded either way.
    """

    def __init__(
        self,
        limit: int,
        per_s: float,
        clock: Clock = time.monotonic,
        max_keys: int = 10_000,
        burst: int | None = None,
    ) -> None:
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.limit = limit
        self.per_s = per_s
        self.burst = max(1, burst) if burst is not None else limit
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.per_s > 0

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
            return bucket
        if len(self._buckets) >= self.max_keys:
            self._evict()
        bucket = TokenBucket(self.limit / self.per_s, self.burst, self._clock)
        self._buckets[key] = bucket
        return bucket

    def _evict(self) -> None:
        # O(1) per new key even under a flood of distinct addresses: drop least recently used buckets.
        # The oldest are almost always full (idle), and forgetting a full bucket loses nothing.
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)

    def allow(self, key: str) -> bool:
        if not self.enabled:
            return True
        return self._bucket(key).allow()

    def retry_after(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.retry_after()

    def __len__(self) -> int:
        return len(self._buckets)


def address_key(host: str | None) -> str:
    """Normalise a client address into a limiter key (IPv6 grouped by /64)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return host  # e.g. a unix socket path or test client name: use as is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
