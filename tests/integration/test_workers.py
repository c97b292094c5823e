"""`gesture-maze serve --workers N`: several processes on one port, sharing a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.integration.durable_helpers import play, states_until
from tests.integration.test_play_watch import create_session, http, maze_of, recv_type
from tests.support.instance import REPO, Instance
from tests.support.redis import redis_server


def test_workers_need_a_shared_store() -> None:
    env = {"PATH": "/usr/bin:/bin", "GM_DATA_DIR": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "serve", "--workers", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "GM_STORE_URL=redis://" in done.stderr


def test_an_unknown_store_url_is_refused_before_serving() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "serve"],
        cwd=REPO, env={"PATH": "/usr/bin:/bin", "GM_STORE_URL": "mongodb://x"}, capture_output=True,
        text=True, timeout=60,
    )
    assert done.returncode == 2 and "unknown GM_STORE_URL scheme 'mongodb'" in done.stderr


@pytest.mark.timeout(120)
async def test_two_worker_processes_serve_one_port(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        env = {"GM_STORE_URL": redis.url, "GM_MAZE_WIDTH": "6", "GM_MAZE_HEIGHT": "6"}
        server = Instance(env, log=tmp_path / "serve.log", args=("--workers", "2")).start()
        try:
            assert server.process is not None
            workers = children(server.process.pid)
            assert len(workers) == 2
            created = await create_session(server, seed=4)
            # Many connections: whichever worker each lands on, the game and its spectators agree.
            async with connect(f"{server.ws_url}/ws/watch/{created['session_id']}") as spectator:
                async with connect(f"{server.ws_url}{created['play_url']}") as player:
                    first = await recv_type(player, "state")
                    acked = await play(player, maze_of(first), first, 3)
                seen = await states_until(spectator, acked[-1]["version"])
                assert seen[-1]["player"] == acked[-1]["player"]
            summary_url = f"{server.http_url}/api/sessions/{created['session_id']}"
            for _ in range(6):
                assert (await http("GET", summary_url)).json()["moves"] == 3
            server.stop()  # SIGTERM: the supervisor stops its workers (each drains) and exits
            assert not any(alive(pid) for pid in workers)
        finally:
            server.stop()


def alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def children(pid: int) -> list[int]:
    """Live worker processes of the supervisor (multiprocessing's resource tracker is not one)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found
