"""Graceful drain: on SIGTERM an instance stops accepting, tells its players and spectators
(`error` `shutting_down`, then 1001), and they resume on another instance with every acknowledged
move (docs/deployment.md#graceful-drain; Kubernetes: deploy/k8s/app.yaml's grace period)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stream.settings import Settings
from stream.web.app import drain
from tests.integration.durable_helpers import eventually, play, states_until
from tests.integration.test_play_watch import create_session, expect_refusal, http, maze_of, recv, recv_type
from tests.support.instance import instances
from tests.support.redis import redis_server
from tests.support.server import live_server

pytestmark = pytest.mark.timeout(240)


async def until_closed(ws: ClientConnection, wait: float = 10.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes the socket, and the close code."""
    messages = []
    try:
        while True:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), wait)))
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code if closed.rcvd else None


def told_to_leave(messages: list[dict[str, Any]], code: int | None) -> bool:
    # States may still follow the error (a move in flight is stored, then acknowledged) until the close.
    return code == 1001 and {"type": "error", "code": "shutting_down"}.items() <= next(
        (m.items() for m in messages if m.get("code") == "shutting_down"), {}.items()
    )


async def test_sigterm_moves_players_and_spectators_to_another_instance(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        env = {"GM_STORE_URL": redis.url, "GM_MAZE_WIDTH": "9", "GM_MAZE_HEIGHT": "9",
               "GM_STORE_LEASE_S": "3"}
        with instances(2, env, tmp_path) as (a, b):
            created = await create_session(a, seed=11)
            sid = created["session_id"]
            watch_a = await connect(f"{a.ws_url}/ws/watch/{sid}")
            watch_b = await connect(f"{b.ws_url}/ws/watch/{sid}")
            for watcher in (watch_a, watch_b):
                assert (await recv(watcher))["type"] == "welcome"
                await recv_type(watcher, "state")
            player = await connect(f"{a.ws_url}{created['play_url']}")
            first = await recv_type(player, "state")
            maze = maze_of(first)
            acked = await play(player, maze, first, 3)

            # Moves in flight while SIGTERM arrives: some may be acknowledged, some not; none of the
            # acknowledged ones may be lost.
            assert a.process is not None
            a.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(ConnectionClosed):
                position = acked[-1]
                for direction in _path(maze, position, 3):
                    await player.send(json.dumps({"type": "move", "direction": direction}))
            messages, code = await until_closed(player)
            assert told_to_leave(messages, code), (messages[-3:], code)
            acked += [m for m in messages if m["type"] == "state" and "last_move" in m]
            spectated, spectator_code = await until_closed(watch_a)
            assert told_to_leave(spectated, spectator_code), (spectated[-3:], spectator_code)

            # While it drains and after, A is not ready and serves no new socket.
            async def a_refuses() -> bool:
                try:
                    return (await http("GET", f"{a.http_url}/health")).status_code == 503
                except httpx.HTTPError:
                    return True  # no longer listening
            assert await a_refuses()

            # The player resumes on B within seconds, with every acknowledged move.
            started = time.monotonic()
            player = await connect(f"{b.ws_url}{created['play_url']}")
            welcome = await recv(player)
            assert welcome["type"] == "welcome" and welcome["resumed"] is True
            resumed = await recv_type(player, "state")
            assert time.monotonic() - started < 5
            last = acked[-1]
            assert resumed["version"] >= last["version"] and resumed["moves"] >= last["moves"]
            if resumed["moves"] == last["moves"]:
                assert resumed["player"] == last["player"]
            assert resumed["maze"] == first["maze"]
            more = await play(player, maze, resumed, 2)
            # B's spectator kept its socket and follows the game on its new instance.
            seen = await states_until(watch_b, more[-1]["version"])
            assert seen[-1]["player"] == more[-1]["player"]
            # A finished on its own, cleanly, well inside Kubernetes' grace period.
            assert await eventually(lambda: _exited(a.process), within_s=20)
            # (uvicorn re-raises the signal once its shutdown is complete: "killed" by SIGTERM, not SIGKILL)
            assert a.process.returncode in (0, -signal.SIGTERM)
            await player.close()
            await watch_b.close()


def _path(maze: Any, state: dict[str, Any], count: int) -> list[str]:
    from maze import Point, solve

    return [d.value for d in solve(maze, Point(**state["player"]))[:count]]


async def _exited(process: Any) -> bool:
    return process.poll() is not None


async def test_a_draining_server_is_not_ready_and_refuses_new_sockets(settings: Settings) -> None:
    with live_server(settings, maze_width=5, maze_height=5) as server:
        created = await create_session(server)
        async with (
            connect(f"{server.ws_url}{created['play_url']}") as player,
            connect(f"{server.ws_url}/ws/watch/{created['session_id']}") as spectator,
        ):
            await recv_type(player, "state")
            await recv_type(spectator, "state")
            # The drain the runner starts on SIGTERM, run on the server's own loop; uvicorn keeps
            # listening, as it does until the drain returns.
            services = server.app.state.services
            loop = services.background_tasks[0].get_loop()
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(drain(server.app), loop))
            for ws in (player, spectator):
                messages, code = await until_closed(ws)
                assert told_to_leave(messages, code), (messages, code)
        health = await http("GET", f"{server.http_url}/health")
        assert health.status_code == 503 and health.json()["status"] == "shutting_down"
        await expect_refusal(f"{server.ws_url}{created['play_url']}", "shutting_down")
        await expect_refusal(f"{server.ws_url}/ws/watch/{created['session_id']}", "shutting_down")
