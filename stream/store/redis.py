"""`redis://host:port/db`: state shared by every instance, with pub/sub fan-out and leases.

Keys (prefix `gm:`): `s:{id}` the record, `m:{id}` its lobby summary, `l:{id}` the player lease
(holder instance id, expires unless refreshed), `lobby` a sorted set of public ids. Channel `c:{id}`
carries a session's events. Every write is one Lua script: check the lease, write record + summary,
refresh TTLs, publish the event - so a fenced-out instance can neither overwrite nor publish.

Pub/sub is at-most-once: a subscriber that reconnects (or that Redis cut at its output-buffer limit)
misses events, so the bus tells its owner after every (re)subscription and the owner resyncs from
the records. A bus that silently stops receiving is caught by a heartbeat it publishes to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.protocol.events import Closed, encode_event
from stream.store.base import (
    Bus,
    EventHandler,
    OwnershipLost,
    ResubscribeHandler,
    SessionRecord,
    Store,
    StoreUnavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "gm:"
_LOBBY = PREFIX + "lobby"
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)

# KEYS: record, summary, lease, lobby, channel. ARGV: owner, record, summary, ttl_ms, lease_ms,
# public, created_at, id, event ("" = none).
_SAVE = """
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[5])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[4], ARGV[7], ARGV[8]) end
if ARGV[9] ~= '' then redis.call('PUBLISH', KEYS[5], ARGV[9]) end
return 1
"""
# KEYS: record, summary, lease. ARGV: owner, ttl_ms, lease_ms. 0 lost, 2 missing, 1 ok.
_TOUCH = """
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 2 end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""
# KEYS: record, summary, lease, lobby, channel. ARGV: owner, id, event.
_DELETE = """
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('PUBLISH', KEYS[5], ARGV[3])
return 1
"""


def _keys(session_id: str) -> tuple[str, str, str]:
    return f"{PREFIX}s:{session_id}", f"{PREFIX}m:{session_id}", f"{PREFIX}l:{session_id}"


def channel(session_id: str) -> str:
    return f"{PREFIX}c:{session_id}"


class RedisStore(Store):
    backend = "redis"
    shared = True

    def __init__(self, url: str, *, lease_s: float, timeout_s: float = 2.0) -> None:
        super().__init__()
        self.url = url
        self.lease_s = lease_s
        self.client = aioredis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=min(1.0, timeout_s),
            # One immediate retry: the first command on a pooled connection that died with a
            # restarted Redis fails once, then reconnects. Longer outages are ours to handle.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
        )
        self._save = self.client.register_script(_SAVE)
        self._touch = self.client.register_script(_TOUCH)
        self._delete = self.client.register_script(_DELETE)

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            result = await awaitable
        except _UNREACHABLE as exc:
            self.set_up(False)
            raise StoreUnavailable(f"redis: {exc}") from exc
        except RedisError as exc:  # e.g. LOADING while a restarted Redis reads its AOF
            self.set_up(False)
            raise StoreUnavailable(f"redis: {exc}") from exc
        self.set_up(True)
        return result

    async def start(self) -> None:
        with contextlib.suppress(StoreUnavailable):  # an outage at boot is a degraded start, not a crash
            await self.ping()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()

    async def ping(self) -> None:
        await self._call(self.client.ping())

    async def save(self, record: SessionRecord, owner: str, ttl_s: float, event: bytes | None = None) -> None:
        sid = record.session_id
        ok = await self._call(
            self._save(
                keys=[*_keys(sid), _LOBBY, channel(sid)],
                args=[
                    owner, record.to_json(), json.dumps(record.summary), int(ttl_s * 1000),
                    int(self.lease_s * 1000), "1" if record.public else "0", record.created_at, sid,
                    event or b"",
                ],
            )
        )
        if not ok:
            raise OwnershipLost(sid)

    async def load(self, session_id: str) -> SessionRecord | None:
        text = await self._call(self.client.get(_keys(session_id)[0]))
        return SessionRecord.from_json(text) if text else None

    async def delete(self, session_id: str, owner: str) -> None:
        event = encode_event(Closed("session expired"))
        await self._call(
            self._delete(
                keys=[*_keys(session_id), _LOBBY, channel(session_id)], args=[owner, session_id, event]
            )
        )

    async def touch(self, session_ids: list[str], owner: str, ttl_s: float) -> tuple[list[str], list[str]]:
        if not session_ids:
            return [], []
        pipe = self.client.pipeline(transaction=False)
        for sid in session_ids:
            args = [owner, int(ttl_s * 1000), int(self.lease_s * 1000)]
            self._touch(keys=list(_keys(sid)), args=args, client=pipe)
        results = await self._call(pipe.execute())
        lost = [sid for sid, r in zip(session_ids, results, strict=True) if r == 0]
        missing = [sid for sid, r in zip(session_ids, results, strict=True) if r == 2]
        return lost, missing

    async def claim(self, session_id: str, owner: str, lease_s: float) -> str | None:
        previous = await self._call(
            self.client.set(_keys(session_id)[2], owner, px=int(lease_s * 1000), get=True)
        )
        return previous.decode() if isinstance(previous, bytes) else previous

    async def holder(self, session_id: str) -> str | None:
        held = await self._call(self.client.get(_keys(session_id)[2]))
        return held.decode() if isinstance(held, bytes) else held

    async def publish_heartbeat(self, name: str) -> None:
        await self.client.publish(name, b"1")  # errors propagate to the bus, which reconnects

    async def publish(self, session_id: str, event: bytes) -> None:
        await self._call(self.client.publish(channel(session_id), event))

    async def list_public(self, limit: int) -> list[dict[str, Any]]:
        ids = [i.decode() for i in await self._call(self.client.zrange(_LOBBY, 0, max(0, limit - 1)))]
        if not ids:
            return []
        summaries = await self._call(self.client.mget([_keys(i)[1] for i in ids]))
        leases = await self._call(self.client.mget([_keys(i)[2] for i in ids]))
        gone = [i for i, s in zip(ids, summaries, strict=True) if s is None]
        if gone:  # expired records: forget them in the lobby too
            with contextlib.suppress(StoreUnavailable):
                await self._call(self.client.zrem(_LOBBY, *gone))
        listed = []
        for text, lease in zip(summaries, leases, strict=True):
            if text is None:
                continue
            summary = json.loads(text)
            if lease is None:  # no instance holds it (e.g. it crashed): nobody is playing right now
                summary["player_connected"] = False
            listed.append(summary)
        return listed

    def bus(self, instance_id: str, on_event: EventHandler, on_resubscribed: ResubscribeHandler) -> RedisBus:
        return RedisBus(self, instance_id, on_event, on_resubscribed)


class RedisBus(Bus):
    """One pub/sub connection per instance for every session channel it follows."""

    HEARTBEAT_S = 1.0
    DEAF_AFTER_S = 3.0  # no own heartbeat received for this long: the subscription is dead
    BACKOFF_S = (0.05, 1.0)

    def __init__(
        self, store: RedisStore, instance_id: str, on_event: EventHandler, on_resubscribed: ResubscribeHandler
    ) -> None:
        self.store = store
        self.on_event = on_event
        self.on_resubscribed = on_resubscribed
        self.heartbeat_channel = f"{PREFIX}hb:{instance_id}"
        self.healthy = False
        self.resubscriptions = 0
        self._counts: dict[str, int] = {}
        self._pubsub: Any = None

    def subscribe(self, session_id: str) -> None:
        count = self._counts.get(session_id, 0)
        self._counts[session_id] = count + 1
        if count == 0 and self.healthy:
            self._send(self._pubsub.subscribe(channel(session_id)))

    def unsubscribe(self, session_id: str) -> None:
        count = self._counts.get(session_id, 0) - 1
        if count > 0:
            self._counts[session_id] = count
            return
        self._counts.pop(session_id, None)
        if self.healthy:
            self._send(self._pubsub.unsubscribe(channel(session_id)))

    def _send(self, command: Awaitable[Any]) -> None:
        # Fire and forget: a failure surfaces in the reader, which resubscribes everything.
        task = asyncio.ensure_future(command)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def run(self) -> None:
        delay = self.BACKOFF_S[0]
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: drop the connection, back off, resubscribe
                if self.healthy:
                    log.warning("session event subscription lost (%s); resubscribing", exc)
            finally:
                self.healthy = False
                await self._drop()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(self.BACKOFF_S[1], delay * 2)
            if self.store.up:
                delay = self.BACKOFF_S[0]

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _listen(self) -> None:
        self._pubsub = pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.heartbeat_channel, *(channel(s) for s in self._counts))
        self.healthy = True
        self.resubscriptions += 1
        self.on_resubscribed()  # events published while we were away are lost: owners resync
        last_seen = last_sent = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last_sent >= self.HEARTBEAT_S:
                last_sent = now
                await self.store.publish_heartbeat(self.heartbeat_channel)
            if now - last_seen > self.DEAF_AFTER_S:
                raise TimeoutError("own heartbeat not received: the subscription went deaf")
            message = await pubsub.get_message(timeout=self.HEARTBEAT_S / 2)
            if message is None:
                continue
            name = message["channel"].decode()
            if name == self.heartbeat_channel:
                last_seen = time.monotonic()
            elif name.startswith(PREFIX + "c:"):
                self.on_event(name[len(PREFIX) + 2 :], message["data"])
