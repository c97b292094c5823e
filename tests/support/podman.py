"""The project's images built and run with podman (deploy/podman/build-image.sh), for the image and
compose tests. Podman, runc and debootstrap are required binaries: missing, they skip locally and fail
in CI (where .ci/run installs them)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.net import LoopbackUrls, free_port
from tests.support.paths import REPO_ROOT, require_binary

SCRIPT = REPO_ROOT / "deploy" / "podman" / "build-image.sh"
CONTAINERS_CONF = REPO_ROOT / "deploy" / "podman" / "containers.conf"
IMAGE = "gesture-maze:latest"


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def require_podman() -> str:
    for name in ("runc", "debootstrap"):
        require_binary(name)
    return require_binary("podman")


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=check
    )


@dataclass
class Build:
    """build-image.sh's report: image names, sizes in bytes, seconds per step."""

    report: dict
    log: Path

    @property
    def added_bytes(self) -> int:
        return int(self.report["added_bytes"])


def build_images(log: Path, *args: str, timeout: float = 1500) -> Build:
    require_podman()
    with log.open("w") as out:
        result = subprocess.run(
            ["bash", str(SCRIPT), *args], env=podman_env(), stdout=subprocess.PIPE, stderr=out,
            text=True, timeout=timeout,
        )
    if result.returncode != 0:
        raise AssertionError(f"build-image.sh failed ({result.returncode}):\n{log.read_text()[-4000:]}")
    return Build(json.loads(result.stdout.strip().splitlines()[-1]), log)


class Container(LoopbackUrls):
    """One container of the image, on the host network (no port mapping needed) at a free port."""

    def __init__(
        self, image: str = IMAGE, env: dict[str, str] | None = None, volumes: list[str] | None = None
    ) -> None:
        self.image = image
        self.volumes = volumes or []
        self.port = free_port()
        self.name = f"gm-test-{uuid.uuid4().hex[:8]}"
        self.env = {"GM_HOST": "127.0.0.1", "GM_PORT": str(self.port), "GM_LOG_LEVEL": "warning",
                    **(env or {})}

    def start(self, timeout: float = 90) -> Container:
        flags = [f"--env={k}={v}" for k, v in self.env.items()] + [f"--volume={v}" for v in self.volumes]
        # --no-healthcheck: podman schedules HEALTHCHECKs with systemd timers (none in CI); the
        # test polls /health itself.
        podman("run", "-d", "--no-healthcheck", "--name", self.name, "--network", "host", *flags, self.image,
               "gesture-maze", "serve", "--host", "127.0.0.1", "--port", str(self.port))
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http_url}/health", timeout=1).status_code == 200:
                    return self
            state = podman("inspect", "--format", "{{.State.Status}}", self.name, check=False).stdout.strip()
            if state not in {"running", "created", "configured"} or time.monotonic() > deadline:
                raise AssertionError(f"container {state}: {self.logs()[-3000:]}")
            time.sleep(0.2)

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command).stdout

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def remove(self) -> None:
        podman("rm", "--force", "--volumes", "--time", "10", self.name, check=False, timeout=60)


@contextlib.contextmanager
def running(
    image: str = IMAGE, env: dict[str, str] | None = None, volumes: list[str] | None = None
) -> Iterator[Container]:
    container = Container(image, env, volumes)
    try:
        yield container.start()
    finally:
        container.remove()
