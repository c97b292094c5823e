"""Churn: hundreds of sessions and connections come and go; memory, threads and trackers come back.

Every churned session gets a player that sends a real JPEG frame (so a MediaPipe HandTracker is
created for it), spectators that join and leave, and some players that vanish abruptly right after
sending a frame (no close handshake: a disconnect mid-frame). Once the reaper has removed the
abandoned sessions, the server must hold no sessions, no connections, no open trackers, and the
process's OS threads, file descriptors and RSS must be back at their warmed-up baseline (RSS with a
tolerance: allocators keep some freed memory, see below).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from model.landmarks import HandTracker
from model.recognizer import Recognizer
from stream.edge.connection import Connection
from stream.sessions.registry import Session
from stream.settings import Settings
from tests.support.paths import GESTURES_DIR, require_path
from tests.support.server import LiveServer, live_server

SESSIONS_PER_ROUND = 100
ROUNDS = 3  # measured rounds, after one warm-up round of the same size
SPECTATORS_PER_SESSION = 2
CONCURRENCY = 8
MiB = 1024 * 1024
# RSS is measured after gc and malloc_trim (see _release_free_memory). An open MediaPipe graph costs
# ~77 MiB, so a session whose tracker is never closed would add far more than this tolerance.
RSS_TOLERANCE_TOTAL = 192 * MiB  # growth over all measured rounds, at any point
THREAD_TOLERANCE = 4
# AnyIO's worker threads (Starlette's run_in_threadpool: building a new game's maze) are a pool that
# grows with simultaneous requests and prunes threads idle for 10 s, so their number at a snapshot
# depends on timing (4-8 seen here at CONCURRENCY 8): counted apart, bounded by the load.
ANYIO_WORKER = "AnyIO worker thread"
FD_TOLERANCE = 16


@dataclass(frozen=True)
class Snapshot:
    rss: int
    os_threads: int
    py_threads: int  # without AnyIO's worker pool
    pool_workers: int  # AnyIO's worker threads
    fds: int
    trackers: int  # HandTracker objects still alive
    open_trackers: int  # ...of which not closed
    sessions: int
    leftovers: int  # Session, Connection and Recognizer objects still alive (gc-reachable)

    def __str__(self) -> str:
        return (
            f"rss={self.rss / MiB:.0f}MiB os_threads={self.os_threads} py_threads={self.py_threads} "
            f"pool_workers={self.pool_workers} "
            f"fds={self.fds} trackers={self.trackers} open_trackers={self.open_trackers} "
            f"sessions={self.sessions} leftovers={self.leftovers}"
        )


def _release_free_memory() -> None:
    """Ask glibc to give freed heap memory back to the OS, so RSS measures what is still in use.

    MediaPipe graphs are large (~77 MiB each while open, measured) and freed ones leave glibc's arenas
    fragmented: without a trim, 30 graphs opened and closed kept ~2 GiB resident; with it, ~0.2 GiB.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def snapshot(server: LiveServer) -> Snapshot:
    # The server runs in this process (a uvicorn thread), so its objects and threads are ours to count.
    gc.collect()
    _release_free_memory()
    objects = gc.get_objects()
    trackers = [obj for obj in objects if isinstance(obj, HandTracker)]
    leftovers = sum(isinstance(obj, Session | Connection | Recognizer) for obj in objects)
    process = psutil.Process()
    pool_workers = sum(t.name == ANYIO_WORKER for t in threading.enumerate())
    return Snapshot(
        rss=process.memory_info().rss,
        os_threads=process.num_threads() - pool_workers,
        py_threads=threading.active_count() - pool_workers,
        pool_workers=pool_workers,
        fds=process.num_fds(),
        trackers=len(trackers),
        open_trackers=sum(getattr(t, "_hands", None) is not None for t in trackers),
        sessions=len(server.app.state.services.registry),
        leftovers=leftovers,
    )


async def gauges(server: LiveServer) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        text = (await http.get("/metrics")).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("gesture_maze_ws_connections", "gesture_maze_sessions"):
                out[sample.name + str(sorted(sample.labels.items()))] = sample.value
    return out


async def one_session(server: LiveServer, frame: bytes, index: int, http: httpx.AsyncClient) -> None:
    # The grace period is short (so few abandoned trackers pile up), and a session nobody has joined
    # yet counts as abandoned: under load one may be reaped between POST and connect. Retry that case.
    for _attempt in range(5):
        response = await http.post("/api/sessions", json={})
        assert response.status_code == 201, response.text
        session = response.json()
        async with connect(server.ws_url + session["play_url"]) as ws:
            welcome = json.loads(await ws.recv())
            if welcome["type"] == "error" and welcome["code"] == "not_found":
                continue
            assert welcome["type"] == "welcome", welcome
            await play_and_watch(server, ws, session, frame, index)
            return
    pytest.fail("every session was reaped before its player could join")


async def play_and_watch(
    server: LiveServer, ws: Any, session: dict[str, Any], frame: bytes, index: int
) -> None:
    await ws.send(frame)
    while True:  # the frame was processed: a tracker exists for this session now
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert message["type"] != "error", message
        if message["type"] == "frame":
            break
    watch_url = server.ws_url + session["watch_url"]
    watchers = [await connect(watch_url) for _ in range(SPECTATORS_PER_SESSION)]
    for watcher in watchers:
        assert json.loads(await asyncio.wait_for(watcher.recv(), 30))["type"] == "welcome"
    if index % 3 == 0:
        # Vanish mid-frame: no close handshake, a frame still being processed.
        await ws.send(frame)
        ws.transport.abort()
        for watcher in watchers:
            watcher.transport.abort()
        return
    for watcher in watchers:
        await watcher.close()


async def churn(server: LiveServer, frame: bytes, count: int) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def guarded(index: int, http: httpx.AsyncClient) -> None:
        async with limit:
            await one_session(server, frame, index, http)

    async with httpx.AsyncClient(base_url=server.http_url) as http:
        await asyncio.gather(*(guarded(i, http) for i in range(count)))


async def settle(server: LiveServer, timeout_s: float = 60.0) -> Snapshot:
    """Wait until every session is reaped and every tracker closed; then the process snapshot."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = snapshot(server)
        metrics = await gauges(server)
        if current.sessions == 0 and current.open_trackers == 0 and not any(metrics.values()):
            await asyncio.sleep(0.5)  # let closed sockets and finished threads go
            return snapshot(server)
        if time.monotonic() > deadline:
            pytest.fail(f"not back to idle after {timeout_s:.0f}s: {current}, gauges {metrics}")
        await asyncio.sleep(0.25)


@pytest.mark.slow
async def test_churn_returns_to_baseline() -> None:
    frame = (require_path(GESTURES_DIR) / "palm.jpg").read_bytes()
    settings: Any = Settings.from_env({}).replace(
        session_grace_s=1.0,  # short: abandoned sessions (and their trackers) do not pile up
        reaper_interval_s=0.25,
        max_sessions=1000,
        session_create_per_min=100_000,
        max_connections_per_ip=10_000,
        max_sockets_per_ip=0,  # hundreds of sockets and sessions, all from 127.0.0.1
        max_sessions_per_ip=0,
        max_trackers_per_ip=0,
        ws_joins_per_10s=0,
        ws_joins_per_s=0,
        api_reads_per_10s=0,
    )
    with live_server(settings) as server:
        await churn(server, frame, SESSIONS_PER_ROUND)  # warm-up: threads, allocator arenas, imports
        baseline = await settle(server)
        print(f"\nbaseline      {baseline}")
        after_rounds = []
        for round_number in range(1, ROUNDS + 1):
            started = time.monotonic()
            await churn(server, frame, SESSIONS_PER_ROUND)
            took = time.monotonic() - started
            after_rounds.append(await settle(server))
            print(f"after round {round_number} {after_rounds[-1]} ({took:.1f}s)")

    for after in after_rounds:
        assert after.sessions == 0 and after.open_trackers == 0
        # (baseline: at most one, the last job's closure a pool thread still holds until its next job)
        assert after.leftovers <= baseline.leftovers, "sessions, connections or recognizers still referenced"
        assert after.trackers <= baseline.trackers, "HandTracker objects are still referenced"
        assert after.os_threads <= baseline.os_threads + THREAD_TOLERANCE
        assert after.py_threads <= baseline.py_threads + THREAD_TOLERANCE
        assert after.pool_workers <= CONCURRENCY + THREAD_TOLERANCE
        assert after.fds <= baseline.fds + FD_TOLERANCE
        assert after.rss - baseline.rss <= RSS_TOLERANCE_TOTAL, f"{after} vs {baseline}"


def test_snapshot_counts_open_trackers() -> None:
    """The tracker count above is a real measurement: it sees trackers until they are closed."""
    gc.collect()
    before = sum(isinstance(o, HandTracker) and o._hands is not None for o in gc.get_objects())
    tracker = HandTracker(model_complexity=0)
    try:
        gc.collect()
        during = sum(isinstance(o, HandTracker) and o._hands is not None for o in gc.get_objects())
        assert during == before + 1
    finally:
        tracker.close()
    with contextlib.suppress(Exception):
        del tracker
    gc.collect()
    after = sum(isinstance(o, HandTracker) and o._hands is not None for o in gc.get_objects())
    assert after == before
