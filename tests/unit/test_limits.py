"""stream.edge.limits: token buckets, the frame gate, connection and per-address rate limits (fake clock)."""

from __future__ import annotations

import math

import pytest

from stream.edge.limits import (
    ConnectionLimiter,
    FrameGate,
    KeyedRateLimiter,
    TokenBucket,
    address_key,
    default_frame_burst,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_token_bucket_starts_full_then_refuses_until_refilled() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=3, clock=clock)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.25)
    clock.advance(0.125)
    assert not bucket.allow()
    clock.advance(0.125)
    assert bucket.allow()
    assert not bucket.allow()


def test_token_bucket_never_exceeds_burst_after_long_idle() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=5, burst=2, clock=clock)
    clock.advance(3600)
    assert bucket.tokens == 2
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


def test_token_bucket_refusals_cost_nothing() -> None:
    # A flooding client must not push itself into debt (or the honest rate would be starved later).
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.allow()
    for _ in range(1000):
        assert not bucket.allow()
    clock.advance(1.0)
    assert bucket.allow()


def test_token_bucket_sustained_rate_matches_configuration() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=30, burst=15, clock=clock)
    accepted = 0
    for _ in range(100 * 60):  # 60 s of a 100 fps flood
        clock.advance(0.01)
        accepted += bucket.allow()
    assert 30 * 60 <= accepted <= 30 * 60 + 15


def test_token_bucket_ignores_clock_going_backwards() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.allow()
    clock.advance(-50)
    assert not bucket.allow()
    clock.advance(50)  # back to where it was: still no new token
    assert not bucket.allow()
    clock.advance(1)
    assert bucket.allow()


def test_token_bucket_validation_and_infinite_retry() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)
    with pytest.raises(ValueError):
        TokenBucket(rate=-1, burst=1)
    clock = FakeClock()
    frozen = TokenBucket(rate=0, burst=1, clock=clock)
    assert frozen.allow()
    assert frozen.retry_after() == math.inf
    assert TokenBucket(rate=1, burst=1, clock=clock).retry_after(cost=2) == math.inf


def test_frame_gate_drops_counts_and_notifies_once() -> None:
    clock = FakeClock()
    gate = FrameGate(rate=10, burst=2, clock=clock)
    results = [gate.admit() for _ in range(6)]
    assert [r.accepted for r in results] == [True, True, False, False, False, False]
    assert [r.notify for r in results] == [False, False, True, False, False, False]
    assert gate.dropped == 4
    clock.advance(1.0)
    more = [gate.admit() for _ in range(4)]
    assert [r.accepted for r in more] == [True, True, False, False]
    assert not any(r.notify for r in more)  # told once per connection, not once per burst
    assert gate.dropped == 6


def test_frame_gate_honest_rate_is_never_dropped() -> None:
    clock = FakeClock()
    gate = FrameGate(rate=30, clock=clock)
    for _ in range(3000):
        clock.advance(1 / 25)
        assert gate.admit().accepted
    assert gate.dropped == 0


def test_frame_gate_disabled_with_zero_rate() -> None:
    gate = FrameGate(rate=0, clock=FakeClock())
    assert all(gate.admit().accepted for _ in range(10_000))
    assert gate.dropped == 0


def test_default_frame_burst() -> None:
    assert default_frame_burst(30) == 15
    assert default_frame_burst(1) == 2


def test_connection_limiter_caps_per_key_and_frees_memory() -> None:
    limiter = ConnectionLimiter(max_per_key=2)
    assert limiter.acquire("a") and limiter.acquire("a")
    assert not limiter.acquire("a")
    assert limiter.acquire("b")
    assert limiter.count("a") == 2 and limiter.total == 3 and len(limiter) == 2
    limiter.release("a")
    assert limiter.acquire("a")
    for _ in range(2):
        limiter.release("a")
    limiter.release("b")
    assert len(limiter) == 0 and limiter.total == 0
    limiter.release("never-seen")  # tolerated, and does not create an entry
    assert len(limiter) == 0


def test_connection_limiter_hold_releases_only_when_admitted() -> None:
    limiter = ConnectionLimiter(max_per_key=1)
    with limiter.hold("ip") as first:
        assert first
        with limiter.hold("ip") as second:
            assert not second
        assert limiter.count("ip") == 1  # the refused hold did not release the admitted one
    assert limiter.count("ip") == 0


def test_connection_limiter_hold_releases_on_exception() -> None:
    limiter = ConnectionLimiter(max_per_key=1)
    with pytest.raises(RuntimeError), limiter.hold("ip"):
        raise RuntimeError("handler crashed")
    assert limiter.count("ip") == 0 and len(limiter) == 0


def test_connection_limiter_unlimited_when_zero() -> None:
    limiter = ConnectionLimiter(max_per_key=0)
    assert all(limiter.acquire("x") for _ in range(1000))


def test_connection_limiter_memory_bounded_by_open_connections_under_address_flood() -> None:
    limiter = ConnectionLimiter(max_per_key=4)
    for i in range(50_000):
        with limiter.hold(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}") as ok:
            assert ok
    assert len(limiter) == 0


def test_keyed_rate_limiter_per_minute_with_retry_after() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(limit=3, per_s=60, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # another address has its own budget
    assert limiter.retry_after("a") == pytest.approx(20.0)
    assert limiter.retry_after("unknown") == 0.0
    clock.advance(20)
    assert limiter.allow("a")
    assert not limiter.allow("a")


def test_keyed_rate_limiter_bounded_memory_under_distinct_address_flood() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(limit=5, per_s=60, clock=clock, max_keys=100)
    for i in range(20_000):
        clock.advance(0.001)
        assert limiter.allow(f"2001:db8:{i:x}::1")
        assert len(limiter) <= 100
    assert len(limiter) == 100


def test_keyed_rate_limiter_keeps_recently_used_keys_when_evicting() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(limit=1, per_s=60, clock=clock, max_keys=3)
    assert limiter.allow("abuser")
    for i in range(10):
        assert not limiter.allow("abuser")  # touching it keeps it most recently used...
        assert limiter.allow(f"other-{i}")  # ...so the flood of others evicts each other, not it
    assert not limiter.allow("abuser")


def test_keyed_rate_limiter_disabled() -> None:
    limiter = KeyedRateLimiter(limit=0, per_s=60, clock=FakeClock())
    assert all(limiter.allow("a") for _ in range(100))
    assert len(limiter) == 0 and limiter.retry_after("a") == 0.0
    with pytest.raises(ValueError):
        KeyedRateLimiter(limit=1, per_s=1, max_keys=0)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2:bbbb::9]", "2001:db8:1:2::/64"),
        (None, "unknown"),
        ("", "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_address_key(host: str | None, key: str) -> None:
    assert address_key(host) == key
