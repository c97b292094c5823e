"""Session lifecycle over real sockets: reconnect, takeover, idle timeout, reaping, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from maze import Point, solve
from stream.server.runner import GracefulServer, build_config
from stream.settings import Settings
from tests.integration.test_play_watch import create_session, http, maze_of, recv, recv_type
from tests.support.server import LiveServer, live_server


@pytest.fixture
def small(settings: Settings) -> Iterator[LiveServer]:
    with live_server(settings, maze_width=5, maze_height=5) as running:
        yield running


async def closed_with(ws: Any, wait: float = 10.0) -> int | None:
    """Read until the server closes the socket; the close code it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), wait)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def player_gone(server: LiveServer, sid: str, wait_s: float = 10.0) -> dict[str, Any]:
    """The session's summary once the server says its player is disconnected: it notices a closed
    socket on its own loop, a moment after the client closed it (a moment that a busy machine makes
    longer), so this waits for that, up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        summary = (await http("GET", f"{server.http_url}/api/sessions/{sid}")).json()
        if summary["player_connected"] is False:
            return summary
        assert time.monotonic() < deadline, f"the server still reports the player connected: {summary}"
        await asyncio.sleep(0.02)


async def test_reconnect_with_the_token_resumes_exactly(small: LiveServer) -> None:
    created = await create_session(small, seed=5)
    url = f"{small.ws_url}{created['play_url']}"
    async with connect(url) as player:
        state = await recv_type(player, "state")
        path = solve(maze_of(state), Point(0, 0))[:3]
        for direction in path:
            await player.send(json.dumps({"type": "move", "direction": direction.value}))
        before = [await recv_type(player, "state") for _ in path][-1]
    assert before["moves"] == 3
    listed = await player_gone(small, created["session_id"])  # the server has noticed the disconnect
    assert listed["moves"] == 3
    async with connect(url) as player:
        assert (await recv(player))["type"] == "welcome"
        resumed = await recv_type(player, "state")
    for key in ("level", "player", "goal", "start", "moves", "status", "scheme"):
        assert resumed[key] == before[key], key
    assert resumed["maze"] == state["maze"]  # same maze, sent again on the new connection's first state
    assert resumed["version"] > before["version"] and resumed["player_connected"] is True


async def test_a_second_player_connection_takes_over(small: LiveServer) -> None:
    created = await create_session(small, seed=9)
    url = f"{small.ws_url}{created['play_url']}"
    async with connect(url) as old:
        await recv_type(old, "state")
        async with connect(url) as new:
            await recv_type(new, "state")
            assert await closed_with(old) == 4000
            # The new connection is the player: it can move.
            await new.send(json.dumps({"type": "restart"}))
            restarted = await recv_type(new, "state")
            assert restarted["player_connected"] is True and "maze" in restarted
    await player_gone(small, created["session_id"])


async def test_an_idle_player_is_closed(settings: Settings) -> None:
    with live_server(settings, maze_width=5, maze_height=5, idle_timeout_s=0.5) as server:
        created = await create_session(server)
        async with connect(f"{server.ws_url}{created['play_url']}") as player:
            await recv_type(player, "state")
            error = await recv_type(player, "error", wait=5)
            assert error["code"] == "idle_timeout"
            assert await closed_with(player) == 4002


async def test_abandoned_sessions_are_reaped(settings: Settings) -> None:
    with live_server(
        settings, maze_width=5, maze_height=5, session_grace_s=0.5, reaper_interval_s=0.1
    ) as server:
        created = await create_session(server)
        sid = created["session_id"]
        async with connect(f"{server.ws_url}/ws/watch/{sid}") as spectator:
            async with connect(f"{server.ws_url}{created['play_url']}") as player:
                await recv_type(player, "state")
            # Spectators do not keep a session alive: it ends once the player has been gone 0.5 s.
            assert await closed_with(spectator) == 1001
        assert (await http("GET", f"{server.http_url}/api/sessions/{sid}")).status_code == 404
        assert len(server.app.state.services.registry) == 0
        metrics = (await http("GET", f"{server.http_url}/metrics")).text
        assert "gesture_maze_sessions 0.0" in metrics


class _GracefulThread:
    """`gesture-maze serve`'s GracefulServer on a loopback port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = GracefulServer(build_config(settings, log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])))

    def __enter__(self) -> _GracefulThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


async def test_shutdown_closes_everyone_with_1001(settings: Settings) -> None:
    with _GracefulThread(settings.replace(maze_width=5, maze_height=5)) as running:
        base = f"http://127.0.0.1:{running.port}"
        created = (await http("POST", f"{base}/api/sessions", json={})).json()
        ws = f"ws://127.0.0.1:{running.port}"
        async with connect(f"{ws}{created['play_url']}") as player, connect(
            f"{ws}/ws/watch/{created['session_id']}"
        ) as spectator:
            await recv_type(player, "state")
            await recv_type(spectator, "state")
            running.server.should_exit = True
            assert await closed_with(player) == 1001
            assert await closed_with(spectator) == 1001
        running.thread.join(20)
        assert not running.thread.is_alive()


def test_ws_max_size_leaves_room_above_the_frame_limit(settings: Settings) -> None:
    config = build_config(settings)
    assert isinstance(config, uvicorn.Config)
    assert config.ws_max_size > settings.max_frame_bytes and config.proxy_headers is False
