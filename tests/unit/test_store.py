"""The embedded store and the spectator relay's ordering rules, without a server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from maze import Game, GameConfig
from stream.durability.relay import RemoteWatch, WatchHub
from stream.metrics import Metrics
from stream.protocol import StateSnapshot
from stream.protocol.events import Batch, decode_event
from stream.store import SessionRecord, StoreError, check_store_url, open_store, store_is_shared, token_hash
from stream.store.sqlite import SqliteStore


def record(sid: str, version: int = 1, private: bool = False) -> SessionRecord:
    game = Game.new(GameConfig(width=5, height=5), seed=3, now=0.0)
    return SessionRecord(
        session_id=sid, version=version,
        options={"width": 5, "height": 5, "seed": 3, "scheme": "counting", "private": private},
        player_token_hash=token_hash("secret"), watch_token_hash=None, created_at=time.time(),
        game=game.to_dict(1.0), state={"type": "state", "version": version},
        summary={"session_id": sid, "moves": version},
    )


async def test_sqlite_keeps_records_across_reopening_and_expires_them(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    store = SqliteStore(path)
    await store.start()
    await store.save(record("a", 3), "me", ttl_s=60)
    await store.save(record("p", 1, private=True), "me", ttl_s=60)
    await store.save(record("old"), "me", ttl_s=-1)  # already expired
    await store.close()

    store = SqliteStore(path)  # a restarted server
    await store.start()
    loaded = await store.load("a")
    assert loaded is not None and loaded.version == 3 and loaded.player_token_hash == token_hash("secret")
    assert Game.from_dict(loaded.game).maze.to_dict() == Game.from_dict(record("a").game).maze.to_dict()
    assert await store.load("old") is None
    assert [s["session_id"] for s in await store.list_public(10)] == ["a"]  # private ones are not listed
    await store.touch(["a"], "me", ttl_s=-1)
    assert await store.load("a") is None
    await store.delete("p", "me")
    assert await store.load("p") is None
    await store.close()


def test_store_urls_pick_a_backend_or_fail_clearly(tmp_path: Path) -> None:
    assert check_store_url(None) == "sqlite" and check_store_url("sqlite:///x.db") == "sqlite"
    assert check_store_url("redis://127.0.0.1:6379/0") == "redis"
    assert store_is_shared("redis://h:1/0") and not store_is_shared(None) and not store_is_shared("sqlite:///a")
    for bad in ("mongodb://x", "redis", "sqlite://"):
        with pytest.raises(StoreError):
            check_store_url(bad)
    store = open_store(None, data_dir=str(tmp_path), lease_s=10)
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "sessions.db"
    absolute = open_store(f"sqlite:///{tmp_path}/other.db", data_dir="unused", lease_s=10)
    assert isinstance(absolute, SqliteStore) and absolute.path == tmp_path / "other.db"


class _Conn:
    def __init__(self) -> None:
        self.states: list[tuple[int, bool]] = []

    def send_state(self, snapshot: StateSnapshot) -> None:
        self.states.append((snapshot.version, snapshot.maze_changed))

    def send_encoded(self, kind: str, text: str) -> None:
        self.states.append((-1, kind == "won"))


class _Backend:
    """What the relay needs from the durability service (RelayBackend), with a stored record."""

    instance_id = "here"

    def __init__(self, stored: SessionRecord | None) -> None:
        self.metrics = Metrics(process=False)
        self.stored = stored
        self.loads = 0

    async def publish(self, session_id: str, event: bytes) -> None:
        pass

    def follow(self, session_id: str) -> None:
        pass

    def unfollow(self, session_id: str) -> None:
        pass

    async def load(self, session_id: str) -> SessionRecord | None:
        self.loads += 1
        return self.stored


def _state(version: int, maze_version: int = 1, maze: Any = None) -> dict[str, Any]:
    return {"k": "s", "v": version, "mv": maze_version, "mc": maze is not None, "b": {"version": version},
            "m": maze}


def _batch(*items: dict[str, Any]) -> Batch:
    """A batch as it arrives on the channel (wire form, decoded)."""
    event = decode_event(json.dumps({"k": "b", "i": list(items)}))
    assert isinstance(event, Batch)
    return event


async def test_the_relay_delivers_in_order_skips_repeats_and_resyncs_after_gaps() -> None:
    stored = record("s", version=9)
    durability = _Backend(stored)
    hub = WatchHub(durability)  # type: ignore[arg-type]
    watch = RemoteWatch("s", hub)
    conn = _Conn()
    watch.conns.add(conn)  # type: ignore[arg-type]
    maze = {"width": 5, "height": 5, "cells": []}

    won = {"k": "m", "p": {"type": "won"}}
    watch.on_batch(_batch(_state(1, maze=maze), _state(2), _state(2), _state(1), won))
    assert conn.states == [(1, True), (2, False), (-1, True)]  # repeats and old versions skipped

    watch.on_batch(_batch(_state(5)))  # a gap (3 and 4 were lost): resent with the maze
    assert conn.states[-1] == (5, True)
    assert durability.metrics.spectator_resyncs._value.get() == 1

    watch.on_batch(_batch(_state(6, maze_version=2)))  # a maze we never received: read the store
    await asyncio.sleep(0.01)
    assert durability.loads == 1
    assert conn.states[-1] == (9, True)  # the stored state (newer), with its maze
    watch.on_batch(_batch(_state(8)))
    assert conn.states[-1] == (9, True)  # older than what the spectators have
