"""REST API, limits and access checks against the real app (uvicorn + httpx + websockets clients)."""

from __future__ import annotations

import contextlib
import gc
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from stream.settings import Settings
from stream.web.app import create_app
from tests.integration.test_play_watch import create_session, expect_refusal, http, recv, recv_type
from tests.support.server import live_server


@contextlib.asynccontextmanager
async def in_process(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, called in-process (for apps live_server cannot build)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def test_what_the_app_loads_at_start_is_kept_out_of_full_collections(settings: Settings) -> None:
    """A full collection over the loaded model and libraries (~170,000 objects) held the GIL ~60 ms."""
    gc.unfreeze()
    async with in_process(create_app(settings)):
        frozen = gc.get_freeze_count()
    gc.unfreeze()
    assert frozen > 50_000, frozen


async def test_create_list_get_health_and_metrics(settings: Settings) -> None:
    with live_server(settings) as server:
        created = await create_session(server, width=9, height=6, seed=42, scheme="pointing")
        sid = created["session_id"]
        assert created["play_url"] == f"/ws/play/{sid}?token={created['player_token']}"
        assert created["watch_url"] == f"/ws/watch/{sid}" and "watch_token" not in created
        assert created["maze"] == {"width": 9, "height": 6} and created["scheme"] == "pointing"
        assert len(created["player_token"]) >= 32

        default = await create_session(server)
        assert default["maze"] == {"width": settings.maze_width, "height": settings.maze_height}
        assert default["scheme"] == settings.default_scheme

        listed = (await http("GET", f"{server.http_url}/api/sessions")).json()["sessions"]
        assert {s["session_id"] for s in listed} == {sid, default["session_id"]}
        one = (await http("GET", f"{server.http_url}/api/sessions/{sid}")).json()
        assert one == next(s for s in listed if s["session_id"] == sid)
        assert one["level"] == 1 and one["moves"] == 0 and one["status"] == "playing"
        assert one["player_connected"] is False and one["spectators"] == 0
        assert "player_token" not in json.dumps(listed)  # tokens are never listed

        missing = await http("GET", f"{server.http_url}/api/sessions/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

        health = (await http("GET", f"{server.http_url}/health")).json()
        assert health["status"] == "ok" and health["sessions"] == 2
        assert health["model"]["version"]

        metrics = await http("GET", f"{server.http_url}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert "gesture_maze_sessions 2.0" in text
        # Route templates, never raw paths (no session id in any label).
        template = r'route="/api/sessions/\{session_id\}",status="404"'
        assert re.search(r'gesture_maze_http_requests_total\{method="GET",' + template + r"\} 1", text)
        assert sid not in text


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        json.dumps({"width": 4}).encode(),
        json.dumps({"width": 41}).encode(),
        json.dumps({"height": "7"}).encode(),
        json.dumps({"width": True}).encode(),
        json.dumps({"seed": -1}).encode(),
        json.dumps({"scheme": "telepathy"}).encode(),
        json.dumps({"private": "yes"}).encode(),
        json.dumps({"colour": "red"}).encode(),
        b"{" + b" " * 5000 + b"}",
    ],
)
async def test_bad_create_bodies_get_400(settings: Settings, body: bytes) -> None:
    app = create_app(settings)
    async with in_process(app) as client:
        response = await client.post(
            "/api/sessions", content=body, headers={"content-type": "application/json"}
        )
        # A body over GM_MAX_TEXT_BYTES is refused before it is read at all: 413.
        too_large = len(body) > settings.max_text_bytes
        assert response.status_code == (413 if too_large else 400)
        assert response.json()["error"]["code"] == ("body_too_large" if too_large else "bad_request")
        assert len(app.state.services.registry) == 0


async def test_sessions_cap_and_creation_rate(settings: Settings) -> None:
    async with in_process(create_app(settings.replace(max_sessions=2))) as client:
        assert [(await client.post("/api/sessions")).status_code for _ in range(3)] == [201, 201, 503]
        assert (await client.post("/api/sessions")).json()["error"]["code"] == "server_full"
    async with in_process(create_app(settings.replace(session_create_per_min=3))) as client:
        codes = [(await client.post("/api/sessions")).status_code for _ in range(4)]
        assert codes == [201, 201, 201, 429]
        limited = await client.post("/api/sessions")
        assert limited.json()["error"]["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1


async def test_connection_and_spectator_caps(settings: Settings) -> None:
    with live_server(settings, max_connections_per_ip=3, max_spectators=1) as server:
        created = await create_session(server)
        watch = f"{server.ws_url}/ws/watch/{created['session_id']}"
        async with connect(watch) as first:
            await recv_type(first, "state")
            await expect_refusal(watch, "too_many_spectators")
            async with connect(f"{server.ws_url}{created['play_url']}") as player:
                await recv_type(player, "state")
                other = await create_session(server)
                async with connect(f"{server.ws_url}/ws/watch/{other['session_id']}") as third:
                    await recv_type(third, "state")
                    # A fourth socket from this address is refused; the others are unaffected.
                    await expect_refusal(
                        f"{server.ws_url}/ws/watch/{other['session_id']}", "too_many_connections"
                    )
                    await player.send('{"type":"ping","t":1}')
                    assert (await recv_type(player, "pong"))["t"] == 1


async def test_frame_flood_is_rate_limited_and_told_once(settings: Settings) -> None:
    with live_server(settings, max_fps=1.0) as server:
        created = await create_session(server)
        async with connect(f"{server.ws_url}{created['play_url']}") as player:
            await recv_type(player, "state")
            for _ in range(12):
                await player.send(b"\x00" * 100)
            await player.send('{"type":"ping","t":7}')
            errors = []
            while True:
                message = await recv(player, wait=30)
                if message["type"] == "pong":
                    break
                if message["type"] == "error":
                    errors.append(message["code"])
            assert errors.count("rate_limited") == 1
            assert len([e for e in errors if e != "rate_limited"]) <= 2  # the burst (2 frames) got answers
        text = (await http("GET", f"{server.http_url}/metrics")).text
        dropped = re.search(r'gesture_maze_frames_dropped_total\{reason="rate_limited"\} (\S+)', text)
        assert dropped is not None and float(dropped.group(1)) >= 10
        assert "gesture_maze_frames_received_total 12.0" in text


async def test_foreign_origin_is_refused_own_and_allowed_origins_pass(settings: Settings) -> None:
    with live_server(settings, allowed_origins=("https://maze.example",)) as server:
        created = await create_session(server)
        watch = f"{server.ws_url}/ws/watch/{created['session_id']}"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(watch, origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        for origin in (f"http://127.0.0.1:{server.port}", "https://maze.example", None):
            async with connect(watch, origin=origin) as ws:
                assert (await recv(ws))["type"] == "welcome"
        foreign = await http(
            "POST", f"{server.http_url}/api/sessions", headers={"origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        preflight = await http(
            "OPTIONS",
            f"{server.http_url}/api/sessions",
            headers={"origin": "https://maze.example", "access-control-request-method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "https://maze.example"


async def test_frontend_is_served_after_the_api_routes(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>Gesture Maze</title>")
    async with in_process(create_app(settings, frontend_dir=tmp_path)) as client:
        page = await client.get("/")
        assert page.status_code == 200 and "Gesture Maze" in page.text
        assert (await client.get("/health")).json()["status"] == "ok"
        assert (await client.get("/api/sessions")).json() == {"sessions": []}
        assert (await client.get("/no-such-file.js")).status_code == 404
        metrics = (await client.get("/metrics")).text
        assert 'route="static"' in metrics
