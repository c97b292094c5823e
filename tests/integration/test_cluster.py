"""Several `gesture-maze serve` processes sharing a real redis-server: any instance serves any session."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.durable_helpers import assert_in_order, eventually, play, states_until
from tests.integration.test_play_watch import create_session, http, maze_of, recv, recv_type
from tests.support.instance import instances
from tests.support.redis import redis_server

pytestmark = pytest.mark.timeout(240)


async def health(instance: Any) -> dict[str, Any]:
    return (await http("GET", f"{instance.http_url}/health")).json()


async def test_any_instance_serves_any_session(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        env = {
            "GM_STORE_URL": redis.url, "GM_MAZE_WIDTH": "8", "GM_MAZE_HEIGHT": "8", "GM_STORE_LEASE_S": "3",
        }
        with instances(3, env, tmp_path) as (a, b, c):
            created = await create_session(a, seed=3)
            sid = created["session_id"]

            # A private session: watchable from another instance only with its watch token.
            private = await create_session(a, private=True)
            async with connect(f"{b.ws_url}/ws/watch/{private['session_id']}") as intruder:
                assert (await recv(intruder))["code"] == "forbidden"
            async with connect(f"{c.ws_url}{private['watch_url']}") as friend:
                assert (await recv(friend))["type"] == "welcome"
                assert (await recv_type(friend, "state"))["session_id"] == private["session_id"]

            # The lobby on B lists the session created on A (and not the private one).
            listed = (await http("GET", f"{b.http_url}/api/sessions")).json()["sessions"]
            assert [s["session_id"] for s in listed] == [sid]
            assert (await http("GET", f"{c.http_url}/api/sessions/{sid}")).status_code == 200

            # A player on A, watched from B and C: every state in order, on both.
            async with (
                connect(f"{b.ws_url}/ws/watch/{sid}") as watch_b,
                connect(f"{c.ws_url}/ws/watch/{sid}") as watch_c,
            ):
                for watcher in (watch_b, watch_c):
                    assert (await recv(watcher))["type"] == "welcome"
                    assert "maze" in await recv_type(watcher, "state")
                player = await connect(f"{a.ws_url}{created['play_url']}")
                first = await recv_type(player, "state")
                maze = maze_of(first)
                acked = await play(player, maze, first, 4)
                for watcher in (watch_b, watch_c):
                    seen = await states_until(watcher, acked[-1]["version"])
                    assert_in_order(seen)
                    positions = [s["player"] for s in seen if "last_move" in s]
                    assert positions == [s["player"] for s in acked]
                # Remote spectators are counted by the instance that runs the game.
                await eventually(lambda: _spectators(a, sid, 2))

                # A dies (SIGKILL): its player continues on B from the last state it was sent.
                a.kill()
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(player.recv(), 5)
                player = await connect(f"{b.ws_url}{created['play_url']}")
                welcome = await recv(player)
                assert welcome["type"] == "welcome" and welcome["resumed"] is True
                resumed = await recv_type(player, "state")
                for key in ("level", "player", "moves", "status"):
                    assert resumed[key] == acked[-1][key], key
                assert resumed["maze"] == first["maze"]
                acked = await play(player, maze, resumed, 2)
                assert acked[-1]["moves"] == 6
                seen = await states_until(watch_c, acked[-1]["version"])
                assert_in_order(seen)
                assert seen[-1]["player"] == acked[-1]["player"]

                # Redis restarts (empty: no persistence) mid-game.
                redis.stop()
                await eventually(lambda: _degraded(b))
                await player.send(json.dumps({"type": "move", "direction": "up"}))
                refused = await recv_type(player, "error")
                assert refused["code"] == "store_unavailable"
                metrics = (await http("GET", f"{b.http_url}/metrics")).text
                assert 'gesture_maze_store_up{backend="redis"} 0.0' in metrics
                refused_create = await http("POST", f"{b.http_url}/api/sessions", json={})
                assert refused_create.status_code == 503
                assert refused_create.json()["error"]["code"] == "store_unavailable"
                redis.start()
                back = asyncio.get_running_loop().time()
                await eventually(lambda: _healthy(b, c), within_s=10)
                acked = await play(player, maze, acked[-1], 1)
                assert acked[-1]["moves"] == 7
                seen = await states_until(watch_c, acked[-1]["version"])
                assert seen[-1]["player"] == acked[-1]["player"]
                assert asyncio.get_running_loop().time() - back < 5.0  # fan-out back within 5 s
                # The lobby and takeover work again: the records were stored again from memory.
                listed = (await http("GET", f"{c.http_url}/api/sessions")).json()["sessions"]
                assert [s["moves"] for s in listed if s["session_id"] == sid] == [7]

                # A second player connection on C takes over: 4000 to the one on B.
                async with connect(f"{c.ws_url}{created['play_url']}") as taker:
                    assert (await recv(taker))["resumed"] is True
                    taken = await recv_type(taker, "state")
                    assert taken["moves"] == 7 and taken["player"] == acked[-1]["player"]
                    with pytest.raises(ConnectionClosed) as closed:
                        while True:
                            await asyncio.wait_for(player.recv(), 10)
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
                    acked = await play(taker, maze, taken, 1)
                    seen = await states_until(watch_b, acked[-1]["version"])
                    assert_in_order(seen)
                    assert seen[-1]["moves"] == 8


async def _spectators(instance: Any, sid: str, count: int) -> bool:
    return (await http("GET", f"{instance.http_url}/api/sessions/{sid}")).json()["spectators"] == count


async def _degraded(instance: Any) -> bool:
    body = await health(instance)
    return body["status"] == "degraded" and body["store"]["up"] is False


async def _healthy(*servers: Any) -> bool:
    for server in servers:
        body = await health(server)
        if body["status"] != "ok" or body["store"].get("events") != "subscribed":
            return False
    return True
