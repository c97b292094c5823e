"""A real uvicorn server on a loopback port, run in a background thread for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from stream.server.runner import GracefulServer, build_config
from stream.settings import Settings
from tests.support.net import LoopbackUrls


class LiveServer(LoopbackUrls):
    """Serves `create_app(settings)` on 127.0.0.1:<free port> until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Exactly what `gesture-maze serve` runs: its uvicorn options (ws_max_size, ws implementation)
        # and GracefulServer (drain with 1001 on stop).
        if settings.store_url is None and not Path(settings.data_dir).is_absolute():
            # Never the checkout's data/: each server gets its own session store unless a test
            # points data_dir somewhere on purpose (e.g. to restart on the same store).
            self._store_dir = tempfile.TemporaryDirectory(prefix="gm-store-")
            settings = settings.replace(store_url=f"sqlite:///{self._store_dir.name}/sessions.db")
        self.settings = settings
        config = build_config(settings, log_level="warning")
        self.app = config.app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._server = GracefulServer(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)


    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self, timeout: float = 20.0) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()
        store_dir = getattr(self, "_store_dir", None)
        if store_dir is not None:
            store_dir.cleanup()


@contextlib.contextmanager
def live_server(settings: Settings | None = None, **overrides: object) -> Iterator[LiveServer]:
    base = settings or Settings.from_env({})
    server = LiveServer(base.replace(**overrides) if overrides else base).start()
    try:
        yield server
    finally:
        server.stop()
