"""The default store (SQLite under GM_DATA_DIR): a restart - even a SIGKILL - loses no game."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.integration.durable_helpers import eventually, play
from tests.integration.test_play_watch import create_session, http, maze_of, recv, recv_type
from tests.support.instance import Instance
from tests.support.server import live_server


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "sigkill"])
async def test_the_default_store_resumes_the_game_after_a_restart(tmp_path: Path, stop: int) -> None:
    env = {"GM_DATA_DIR": str(tmp_path / "data"), "GM_MAZE_WIDTH": "6", "GM_MAZE_HEIGHT": "6"}
    server = Instance(env, log=tmp_path / "server.log").start()
    try:
        created = await create_session(server, seed=21)
        async with connect(f"{server.ws_url}{created['play_url']}") as player:
            welcome = await recv(player)
            assert welcome["type"] == "welcome" and welcome["resumed"] is False
            first = await recv_type(player, "state")
            acked = await play(player, maze_of(first), first, 3)
        before = acked[-1]
        server.stop(stop)
        server = Instance(env, log=tmp_path / "server.log").start()
        listed = (await http("GET", f"{server.http_url}/api/sessions")).json()["sessions"]
        assert [s["session_id"] for s in listed] == [created["session_id"]]
        assert listed[0]["moves"] == 3
        async with connect(f"{server.ws_url}{created['play_url']}") as player:
            welcome = await recv(player)
            assert welcome["type"] == "welcome" and welcome["resumed"] is True
            resumed = await recv_type(player, "state")
            for key in ("level", "player", "goal", "start", "moves", "status", "scheme"):
                assert resumed[key] == before[key], key
            assert resumed["maze"] == first["maze"]
            assert resumed["version"] > before["version"]
            assert 0 < resumed["elapsed_s"] < 60  # the level clock continues, it does not restart
            more = await play(player, maze_of(resumed), resumed, 1)
            assert more[-1]["moves"] == 4
        # A wrong token is still refused after the restart (only the token's hash was stored).
        async with connect(f"{server.ws_url}/ws/play/{created['session_id']}?token=nope") as intruder:
            assert (await recv(intruder))["code"] == "forbidden"
    finally:
        server.stop()


async def test_a_reaped_session_is_gone_from_the_store_too(tmp_path: Path) -> None:
    settings_dir = tmp_path / "data"
    with live_server(data_dir=str(settings_dir), session_grace_s=0.3, reaper_interval_s=0.1) as server:
        created = await create_session(server)
        path = f"/api/sessions/{created['session_id']}"

        async def reaped() -> bool:  # never joined: gone after the 0.3 s grace, at the reaper's next pass
            return (await http("GET", f"{server.http_url}{path}")).status_code == 404

        await eventually(reaped)
    with live_server(data_dir=str(settings_dir)) as server:  # and it does not come back after a restart
        assert (await http("GET", f"{server.http_url}{path}")).status_code == 404
        assert (await http("GET", f"{server.http_url}/api/sessions")).json() == {"sessions": []}
