"""Feedback and donations over real sockets are fair between addresses (issue 26, items 6 and 8).

A flooding address with two games cannot store more than its caps, cannot evict other players'
corrections from a full table, and does not slow an honest player's corrections from another address
(127.0.0.0/8 is all loopback: each test address is its own client). Donations: one address's games
add at most GM_DONATIONS_ADDRESS_PER_DAY files of at most the per-game sample caps.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import connect

from model.feedback import FeedbackEvent, FeedbackStore, default_feedback_url
from stream.recognition.feedback import ContributorIds
from stream.settings import Settings
from tests.integration.test_feedback_undo import undo
from tests.integration.test_gesture_stream import BLANK, Peer
from tests.support.frames import jittered_frames
from tests.support.server import LiveServer, live_server

pytestmark = pytest.mark.slow  # real MediaPipe on three sockets at once (~40 s)

ATTACKER, HONEST = "127.0.0.3", "127.0.0.2"
SECRET = "feedback-fairness-test-secret"


@asynccontextmanager
async def game_from(server: LiveServer, address: str) -> AsyncIterator[Peer]:
    """A new session created and played from `address`."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=server.http_url, transport=transport) as http:
        created = (await http.post("/api/sessions", json={"seed": 11})).json()
    async with connect(server.ws_url + created["play_url"], max_size=None, local_addr=(address, 0)) as ws:
        player = Peer(ws)
        await player.wait_for(lambda p: bool(p.of("welcome")) and bool(p.of("state")))
        try:
            yield player
        finally:
            await player.close()


async def lockstep(player: Peer, frames: list[bytes]) -> None:
    """Each frame only after the previous one was answered (none superseded, however busy the pool)."""
    for frame in frames:
        before = player.replies()
        await player.ws.send(frame)
        await player.wait_for(lambda p, n=before: p.replies() > n)


async def gesture_move(player: Peer, frames: list[bytes]) -> None:
    before = len(player.gesture_moves())
    await lockstep(player, [BLANK, *frames, BLANK])
    await player.flush()
    assert len(player.gesture_moves()) == before + 1


async def corrections(server: LiveServer, address: str, frames: list[bytes], count: int) -> list[bool]:
    """`count` gesture moves (wall bumps count too), each undone with consent; their `stored` flags."""
    async with game_from(server, address) as player:
        await player.ws.send('{"type":"consent","feedback":true}')
        stored = []
        for _ in range(count):
            await gesture_move(player, frames)
            reply = await undo(player, '{"type":"undo","label":"three"}')
            assert reply["type"] == "undone", reply
            stored.append(reply["stored"])
        return stored


async def metric(server: LiveServer, line: str) -> str:
    """/metrics once it shows `line` (counters are bumped when the writer thread is done)."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        while True:
            text = (await http.get("/metrics")).text
            if line in text:
                return text
            assert time.monotonic() < deadline, f"{line!r} never appeared"
            await asyncio.sleep(0.1)


async def test_a_flooding_address_stays_within_its_caps_and_evicts_only_itself(tmp_path, gestures_dir):
    peace = jittered_frames(gestures_dir / "peace.jpg", 6, seed=3)
    settings = Settings.from_env({}).replace(
        data_dir=str(tmp_path), drift_interval_s=0, contributor_secret=SECRET, feedback_max_events=12,
        feedback_game_per_min=3, feedback_address_per_hour=5,
    )
    url = default_feedback_url(tmp_path)
    store = FeedbackStore(url)
    for i in range(6):  # earlier corrections of three other players
        store.add(FeedbackEvent("four", 0.9, "three", "left", [[[float(i), 1.0]] * 21], session_key=f"k{i}",
                                contributor=f"a-earlier{i % 3}"))
    store.close()
    with live_server(settings) as server:
        # Two games of one address flood (5 corrections each) while an honest player corrects twice.
        flood_a, flood_b, honest = await asyncio.gather(
            corrections(server, ATTACKER, peace, 5), corrections(server, ATTACKER, peace, 5),
            corrections(server, HONEST, peace, 2),
        )
        assert honest == [True, True]
        assert (flood_a + flood_b).count(True) == 5  # the address's hourly cap, over both games
        assert flood_a.count(True) <= 3 and flood_b.count(True) <= 3  # each game's per-minute cap
        text = await metric(server, 'gesture_maze_feedback_evicted_total{reason="table_full"} 1.0')
        assert 'gesture_maze_feedback_total{result="stored"} 7.0' in text
        refused = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("gesture_maze_feedback_total{result=\"refused_"))
        assert refused == 5.0
    ids = ContributorIds.from_secret_or_file(SECRET, tmp_path)
    store = FeedbackStore(url)
    counts = store.counts_by_contributor()
    store.close()
    # 6 earlier + 2 honest + 5 flood = 13 > 12: the flood (the largest contributor) paid for it.
    assert counts == {"a-earlier0": 2, "a-earlier1": 2, "a-earlier2": 2, ids.of(HONEST): 2,
                      ids.of(ATTACKER): 4}


async def _calibrate(player: Peer, frames: list[bytes]) -> None:
    await player.ws.send(json.dumps({"type": "calibrate", "gesture": "palm"}))
    await lockstep(player, frames)
    await player.ws.send(json.dumps({"type": "donate", "donate": True}))
    await player.wait_for(lambda p: any(m["donate"] for m in p.of("calibration")))


async def test_one_address_donates_at_most_its_daily_files_of_capped_samples(tmp_path, gestures_dir):
    palm = jittered_frames(gestures_dir / "palm.jpg", 12, seed=4)
    settings = Settings.from_env({}).replace(
        data_dir=str(tmp_path), drift_interval_s=0, contributor_secret=SECRET, donation_max_per_gesture=4,
        donations_address_per_day=2, session_grace_s=0.5, reaper_interval_s=0.2,
    )
    with live_server(settings) as server:
        for address in (ATTACKER, ATTACKER, ATTACKER, HONEST):
            async with game_from(server, address) as player:
                await _calibrate(player, palm)
        # The sessions end (grace 0.5 s) and donate: two of the attacker's three, and the honest one.
        text = await metric(server, 'gesture_maze_donations_total{result="refused_address"} 1.0')
        text = await metric(server, 'gesture_maze_donations_total{result="stored"} 3.0')
        assert 'gesture_maze_donation_samples_total{result="capped"}' in text
    ids = ContributorIds.from_secret_or_file(SECRET, tmp_path)
    files = sorted((tmp_path / "donations").glob("*.csv"))
    assert sum(ids.of(ATTACKER) in f.name for f in files) == 2
    assert sum(ids.of(HONEST) in f.name for f in files) == 1
    assert all(ATTACKER not in f.name and HONEST not in f.name for f in files)
    for f in files:
        rows = list(csv.DictReader(f.open()))
        assert 1 <= len(rows) <= 4 and {r["label"] for r in rows} == {"palm"}

