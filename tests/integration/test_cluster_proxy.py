"""deploy/nginx/cluster.conf with the real nginx in front of two replicas sharing a real Redis:
players and spectators connect through the proxy, and a replica that stops is routed around."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stream.settings import Settings
from tests.integration.durable_helpers import assert_in_order, play, states_until
from tests.integration.test_play_watch import http, maze_of, recv, recv_type
from tests.support.nginx_proxy import nginx_proxy
from tests.support.redis import redis_server
from tests.support.server import LiveServer

pytestmark = pytest.mark.timeout(120)


async def test_the_proxy_spreads_sessions_and_routes_around_a_stopped_replica(
    tmp_path: Path, settings: Settings
) -> None:
    with redis_server(tmp_path / "redis") as redis:
        shared = settings.replace(store_url=redis.url, maze_width=6, maze_height=6)
        replicas = [LiveServer(shared).start(), LiveServer(shared).start()]
        try:
            upstreams = [f"127.0.0.1:{r.port}" for r in replicas]
            with nginx_proxy(upstreams, tmp_path / "nginx") as base:
                ws_base = base.replace("http://", "ws://")
                response = await http("POST", f"{base}/api/sessions", json={"seed": 8})
                assert response.status_code == 201, response.text
                created = response.json()
                sid = created["session_id"]
                async with connect(f"{ws_base}/ws/watch/{sid}") as spectator:
                    assert (await recv(spectator))["type"] == "welcome"
                    player = await connect(f"{ws_base}{created['play_url']}")
                    first = await recv_type(player, "state")
                    maze = maze_of(first)
                    acked = await play(player, maze, first, 3)
                    seen = await states_until(spectator, acked[-1]["version"])
                    assert_in_order(seen)
                    assert seen[-1]["player"] == acked[-1]["player"]
                    listed = (await http("GET", f"{base}/api/sessions")).json()["sessions"]
                    assert [s["moves"] for s in listed if s["session_id"] == sid] == [3]

                    # Stop the replica running the game: the player comes back through the proxy
                    # (to the other replica) and continues where it was.
                    (running,) = [r for r in replicas if r.app.state.services.registry.get(sid) is not None]
                    await asyncio.to_thread(running.stop)
                    with pytest.raises(ConnectionClosed):
                        while True:
                            await asyncio.wait_for(player.recv(), 10)
                    async with connect(f"{ws_base}{created['play_url']}") as player:
                        assert (await recv(player))["resumed"] is True
                        resumed = await recv_type(player, "state")
                        assert resumed["moves"] == 3 and resumed["player"] == acked[-1]["player"]
                        acked = await play(player, maze, resumed, 1)
                        assert acked[-1]["moves"] == 4
        finally:
            for replica in replicas:
                replica.stop()
