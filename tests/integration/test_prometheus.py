"""A real Prometheus scrapes the real app: real JPEG frames over a WebSocket show up as metrics.

Also proves the alert rules load in a real Prometheus and that the label values the rules select on
(`role="player"`, `stage="total"`, `detected="true"`) are the ones the app really emits.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from stream.settings import Settings
from tests.support.paths import GESTURES_DIR, require_binary, require_path
from tests.support.prometheus import PrometheusProcess
from tests.support.server import LiveServer, live_server

TIMEOUT = 30.0
FRAMES = 5


@pytest.fixture
def prometheus_binary() -> str:
    return require_binary("prometheus")


@pytest.fixture
def app_server(settings: Settings) -> Iterator[LiveServer]:
    with live_server(settings) as running:
        yield running


@pytest.fixture
def prometheus(prometheus_binary: str, app_server: LiveServer, tmp_path: Path) -> Iterator[PrometheusProcess]:
    running = PrometheusProcess(prometheus_binary, f"127.0.0.1:{app_server.port}", tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def poll(check, what: str, prom: PrometheusProcess) -> Any:
    """Call async `check()` until it returns something truthy (for at most TIMEOUT seconds)."""
    deadline = time.monotonic() + TIMEOUT
    last: Any = None
    while time.monotonic() < deadline:
        if prom.process.poll() is not None:
            pytest.fail(f"prometheus exited ({prom.process.returncode}):\n{prom.log_tail()}")
        try:
            last = await check()
        except httpx.TransportError as exc:  # not listening yet
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})\n{prom.log_tail()}")


async def query(client: httpx.AsyncClient, prom: PrometheusProcess, expr: str) -> float | None:
    response = await client.get(f"{prom.url}/api/v1/query", params={"query": expr})
    response.raise_for_status()
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def recv_type(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert message["type"] != "error", message
        if message["type"] == kind:
            return message


async def test_prometheus_scrapes_frames_sent_over_a_websocket(
    app_server: LiveServer, prometheus: PrometheusProcess
) -> None:
    frame = (require_path(GESTURES_DIR) / "like.jpg").read_bytes()
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def target_up() -> bool:
            response = await client.get(f"{prometheus.url}/api/v1/targets")
            targets = response.json()["data"]["activeTargets"] if response.status_code == 200 else []
            return any(t["labels"]["job"] == "gesture-maze" and t["health"] == "up" for t in targets)

        await poll(target_up, "the app target to be up", prometheus)
        (baseline,) = await poll(
            lambda: _present(query(client, prometheus, "gesture_maze_frames_received_total")),
            "the first scrape of frames_received_total",
            prometheus,
        )
        assert await query(client, prometheus, 'up{job="gesture-maze"}') == 1.0

        # The real alert rules are loaded and the server-down alert is quiet.
        rules = (await client.get(f"{prometheus.url}/api/v1/rules")).json()["data"]["groups"]
        names = {rule["name"] for group in rules for rule in group["rules"]}
        assert {"GestureMazeDown", "GestureMazeFrameLatencyHigh", "GestureMazeFramesDropped"} <= names
        down = [r for g in rules for r in g["rules"] if r["name"] == "GestureMazeDown"]
        assert down[0]["state"] == "inactive"

        created = await client.post(f"{app_server.http_url}/api/sessions", json={})
        assert created.status_code == 201, created.text
        play_url = app_server.ws_url + created.json()["play_url"]
        async with connect(play_url, max_size=None) as ws:
            assert (await recv_type(ws, "welcome"))["role"] == "player"
            hands = 0
            for _ in range(FRAMES):
                await ws.send(frame)
                reply = await recv_type(ws, "frame")
                hands += reply["hand"]
            assert hands > 0, "MediaPipe found no hand in like.jpg"

            # While the player is connected, the gauge the no-frames alert relies on shows it.
            await poll(
                lambda: _equals(query(client, prometheus, 'gesture_maze_ws_connections{role="player"}'), 1.0),
                "role=player connection gauge",
                prometheus,
            )

        # Counters are scraped asynchronously: wait for a scrape taken after all frames were handled.
        target = baseline + FRAMES
        for expr, minimum in [
            ("gesture_maze_frames_received_total", target),
            ('gesture_maze_stage_seconds_count{stage="total"}', FRAMES),
            ('gesture_maze_frames_hand_total{detected="true"}', hands),
        ]:
            value = await poll(
                lambda expr=expr, minimum=minimum: _at_least(query(client, prometheus, expr), minimum),
                f"{expr} >= {minimum}",
                prometheus,
            )
            assert value >= minimum


async def _present(pending) -> tuple[float] | None:
    """A sample's value wrapped so that 0.0 still counts as found."""
    value = await pending
    return None if value is None else (value,)


async def _at_least(pending, minimum: float) -> float | None:
    value = await pending
    return value if value is not None and value >= minimum else None


async def _equals(pending, expected: float) -> bool:
    return (await pending) == expected
