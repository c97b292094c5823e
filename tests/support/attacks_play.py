"""Attacks by clients that never play (tests/integration/test_abuse_play.py), each `async def
(target) -> dict` run in its own process by tests.support.abuse: spectator churn, a lobby flood,
and hand trackers hoarded by games kept open without a camera."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.abuse import Target, http_client
from tests.support.attacks import close, ws_open
from tests.support.frames import blank_jpeg

CHURN_ADDRESSES = ("127.0.0.3", "127.0.0.6", "127.0.0.7", "127.0.0.8")
LOBBY_CREATORS = tuple(f"127.0.1.{i}" for i in range(1, 26))  # 25 addresses x 4 games


def warm_up() -> None:
    blank_jpeg()


async def _public_games(target: Target) -> list[dict[str, Any]]:
    async with http_client(target.address, base_url=target.http_url) as http:
        return (await http.get("/api/sessions")).json()["sessions"]


async def spectator_churn(target: Target) -> dict[str, Any]:
    """Watch sockets join and leave the public games as fast as 4 addresses x 8 loops can."""
    games = [g["session_id"] for g in await _public_games(target)]
    joins: Counter[str] = Counter()
    deadline = time.monotonic() + target.duration_s

    async def churn(address: str, loop: int) -> None:
        while time.monotonic() < deadline:
            sid = games[loop % len(games)]
            try:
                _, writer, _ = await ws_open(target, f"/ws/watch/{sid}", address=address)
            except (AssertionError, OSError, asyncio.IncompleteReadError, TimeoutError):
                joins["refused"] += 1
                await asyncio.sleep(0.01)
                continue
            joins["joined"] += 1
            close(writer)  # leave at once

    await asyncio.gather(*(churn(a, i) for a in CHURN_ADDRESSES for i in range(8)))
    return {"games": len(games), **joins}


async def lobby_games(http_url: str) -> Counter[int]:
    """100 public 40x40 games from 25 addresses (made before the honest player's baseline)."""
    created: Counter[int] = Counter()

    async def make(address: str) -> None:
        async with http_client(address, base_url=http_url, timeout=30.0) as http:
            for _ in range(4):
                response = await http.post("/api/sessions", json={"width": 40, "height": 40})
                created[response.status_code] += 1

    await asyncio.gather(*(make(a) for a in LOBBY_CREATORS))
    return created


async def lobby_flood(target: Target) -> dict[str, Any]:
    """`GET /api/sessions` as fast as 2 addresses x 8 loops can ask, for the whole attack."""
    deadline = time.monotonic() + target.duration_s
    answers: Counter[int] = Counter()
    largest_page = 0

    async def flood(address: str) -> None:
        nonlocal largest_page
        async with http_client(address, base_url=target.http_url, timeout=10.0) as http:
            while time.monotonic() < deadline:
                response = await http.get("/api/sessions")
                answers[response.status_code] += 1
                if response.status_code == 200:
                    largest_page = max(largest_page, len(response.json()["sessions"]))

    await asyncio.gather(*(flood(a) for a in ("127.0.0.3", "127.0.0.6") for _ in range(8)))
    return {"answers": dict(answers), "largest_page": largest_page}


async def tracker_hoarding(target: Target) -> dict[str, Any]:
    """One address opens 10 games, sends ONE grey frame in each (a hand tracker for each, if the
    server allowed it) and keeps them open with pings, sending no more frames."""
    frame = blank_jpeg()
    replies: Counter[str] = Counter()
    async with http_client(target.address, base_url=target.http_url) as http:
        games = []
        for _ in range(10):
            response = await http.post("/api/sessions", json={})
            if response.status_code == 201:
                games.append(response.json())

    async def hold(game: dict[str, Any]) -> None:
        url = target.ws_url + game["play_url"]
        async with connect(url, local_addr=(target.address, 0), max_size=None, compression=None) as ws:
            await ws.send(frame)
            deadline = time.monotonic() + target.duration_s
            with contextlib.suppress(ConnectionClosed):
                while time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            message = json.loads(await ws.recv())
                            if message["type"] == "frame":
                                replies["frame"] += 1
                            elif message["type"] == "error":
                                replies[message["code"]] += 1
                    await ws.send(json.dumps({"type": "ping", "t": 1}))

    await asyncio.gather(*(hold(g) for g in games))
    return {"games": len(games), "replies": dict(replies)}
