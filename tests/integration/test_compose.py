"""docker-compose.yml's serving stack under podman-compose: two app replicas + Redis + nginx
(deploy/nginx/cluster.conf), images built here from Debian packages (deploy/podman/compose.podman.yml).
A player on one replica, watched through the proxy, survives that replica being killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.durable_helpers import play, states_until
from tests.integration.test_play_watch import http, maze_of, recv, recv_type
from tests.support.paths import REPO_ROOT, in_ci
from tests.support.podman import build_images, podman, podman_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
REPLICAS = 2


def podman_compose() -> str:
    found = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
    if not Path(found).exists():
        message = "podman-compose is not installed (pip install -e '.[test]')"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


class Stack:
    def __init__(self, log: Path) -> None:
        self.project = f"gmtest{uuid.uuid4().hex[:6]}"
        self.log = log
        self.env = {**podman_env(), "APP_REPLICAS": str(REPLICAS), "GRAFANA_ADMIN_PASSWORD": "unused-here"}
        self.base = [podman_compose(), "-p", self.project, "-f", str(REPO_ROOT / "docker-compose.yml"),
                     "-f", str(REPO_ROOT / "deploy" / "podman" / "compose.podman.yml")]

    @property
    def url(self) -> str:
        """The proxy at its container address (root reaches the compose network's bridge)."""
        address = podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                         f"{self.project}_proxy_1").stdout.strip()
        return f"http://{address}:8080"

    def compose(self, *args: str, timeout: float = 300) -> None:
        with self.log.open("a") as out:
            subprocess.run([*self.base, *args], env=self.env, cwd=REPO_ROOT, stdout=out,
                           stderr=subprocess.STDOUT, timeout=timeout, check=True)

    def replicas(self) -> list[str]:
        return podman("ps", "--filter", f"label=io.podman.compose.project={self.project}",
                      "--filter", "label=com.docker.compose.service=app", "--format", "{{.Names}}"
                      ).stdout.split()

    def sessions_on(self, container: str) -> int:
        probe = ("import json, urllib.request; print(json.load(urllib.request.urlopen("
                 "'http://127.0.0.1:8000/health', timeout=4))['sessions'])")
        return int(podman("exec", container, "python", "-c", probe).stdout)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError, subprocess.CalledProcessError):
                health = httpx.get(f"{self.url}/health", timeout=2)
                if (health.status_code == 200 and health.json()["status"] == "ok"
                        and len(self.replicas()) == REPLICAS
                        and all(self._healthy(name) for name in self.replicas())):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"stack not ready: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def _healthy(self, container: str) -> bool:
        try:
            self.sessions_on(container)
            return True
        except subprocess.CalledProcessError:
            return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("compose")
    build_images(tmp / "build.log", "services")
    running = Stack(tmp / "compose.log")
    try:
        running.compose("up", "-d", "app", "redis", "proxy")
        running.wait_ready()
        yield running
    finally:
        with contextlib.suppress(Exception):
            running.compose("down", "-v", "-t", "5")


async def test_a_player_survives_its_replica_being_killed(stack: Stack) -> None:
    page = await http("GET", f"{stack.url}/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    created = (await http("POST", f"{stack.url}/api/sessions", json={"seed": 7})).json()
    ws = stack.url.replace("http", "ws")
    player = await connect(f"{ws}{created['play_url']}")
    first = await recv_type(player, "state")
    maze = maze_of(first)
    acked = await play(player, maze, first, 3)
    spectator = await connect(f"{ws}/ws/watch/{created['session_id']}")
    assert (await recv(spectator))["type"] == "welcome"

    # Kill (SIGKILL) the replica that runs the game.
    (holder,) = [name for name in stack.replicas() if stack.sessions_on(name) == 1]
    podman("kill", "--signal", "KILL", holder)
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(player.recv(), 10)

    # The player reconnects through the proxy (nginx skips the dead replica) and continues.
    player = await connect(f"{ws}{created['play_url']}")
    welcome = await recv(player)
    assert welcome["type"] == "welcome" and welcome["resumed"] is True
    resumed = await recv_type(player, "state")
    for key in ("level", "player", "moves"):
        assert resumed[key] == acked[-1][key], key
    more = await play(player, maze, resumed, 2)

    # The spectator sees the game continue: on its socket if it was on the survivor, else after
    # reconnecting through the proxy like the web client does.
    try:
        seen = await states_until(spectator, more[-1]["version"])
    except (ConnectionClosed, TimeoutError):
        spectator = await connect(f"{ws}/ws/watch/{created['session_id']}")
        assert (await recv(spectator))["type"] == "welcome"
        seen = await states_until(spectator, more[-1]["version"])
    assert seen[-1]["player"] == more[-1]["player"]
    await player.send(json.dumps({"type": "ping", "t": 1}))
    assert (await recv_type(player, "pong"))["t"] == 1
    await player.close()
    await spectator.close()
