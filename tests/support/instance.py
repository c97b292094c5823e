"""`gesture-maze serve` as a real OS process (what a replica or a restarted server is): its own
interpreter, event loop and store client, killable with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.net import LoopbackUrls, free_port, stop_process

REPO = Path(__file__).resolve().parents[2]


class Instance(LoopbackUrls):
    def __init__(self, env: dict[str, str], *, log: Path, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GM_")},
            "GM_HOST": "127.0.0.1",
            "GM_PORT": str(self.port),
            "GM_LOG_LEVEL": "warning",
            "GM_MODEL_POLL_S": "0",
            "GM_WORKERS": "1",
            **env,
        }
        self.args = args
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None


    def launch(self) -> Instance:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream.cli", "serve", *self.args],
                env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> Instance:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"server exited ({code}): {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http_url}/health", timeout=1.0).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def start(self) -> Instance:
        return self.launch().wait_ready()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextlib.contextmanager
def instances(count: int, env: dict[str, str], tmp: Path) -> Iterator[list[Instance]]:
    """`count` replicas started in parallel (their start-up is mostly imports), stopped at the end."""
    started = [Instance(env, log=tmp / f"instance-{i}.log") for i in range(count)]
    try:
        for instance in started:  # launch all, then wait for each: their start-ups overlap
            instance.launch()
        for instance in started:
            instance.wait_ready()
        yield started
    finally:
        for instance in started:
            instance.stop()
