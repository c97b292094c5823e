"""A real `redis-server` (Debian package) on a free loopback port, in a temporary directory."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.net import free_port, stop_process
from tests.support.paths import require_binary


class RedisServer:
    """`start()` / `stop()` / `restart()` on one port; `persist=True` keeps data across a restart (AOF)."""

    def __init__(self, workdir: Path, *, persist: bool = False, port: int | None = None) -> None:
        self.binary = require_binary("redis-server")
        self.workdir = workdir
        self.persist = persist
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
            "--protected-mode", "yes", "--loglevel", "warning",
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.workdir
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.process.stderr.read().decode()[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        stop_process(process)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def redis_server(workdir: Path, *, persist: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(workdir, persist=persist).start()
    try:
        yield server
    finally:
        server.stop()
