"""`gesture-maze serve --workers N`: one server process per core on one listening socket.

Each worker is a full server (its own event loop, frame pool, sessions and store client), so the
processes only meet in the shared store: `--workers` needs `GM_STORE_URL=redis://...`. With the
embedded SQLite store each process would hold games the others cannot see (and a reconnect landing
on another process would find none), so that combination is refused. The supervisor restarts a
worker that dies, and on SIGINT/SIGTERM lets every worker drain (1001 to its sockets) before exiting.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from stream.settings import Settings, SettingsError
from stream.store import store_is_shared

log = logging.getLogger("gesture_maze.workers")

_STOP_TIMEOUT_S = 20.0
_RESTART_DELAY_S = 1.0


def check_workers(settings: Settings, workers: int) -> None:
    if workers < 1:
        raise SettingsError("--workers must be at least 1")
    if workers > 1 and not store_is_shared(settings.store_url):
        raise SettingsError(
            "--workers > 1 needs a shared session store (GM_STORE_URL=redis://host:port/db): with the "
            "default SQLite store each process would hold games the others cannot see"
        )


def _worker_main(settings: Settings, sock: socket.socket) -> None:
    from stream.server.memory import limit_allocator_arenas
    from stream.server.runner import GracefulServer, build_config

    limit_allocator_arenas()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
    )
    GracefulServer(build_config(settings)).run(sockets=[sock])


def _bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_workers(settings: Settings, workers: int) -> int:
    """Run `workers` server processes until SIGINT/SIGTERM; returns the exit status."""
    check_workers(settings, workers)
    if settings.workers is None:
        # Each process gets its share of the cores for its frame pool: N processes each with a pool
        # as large as the machine would run N x cores MediaPipe threads on `cores` cores.
        settings = settings.replace(workers=max(1, (os.cpu_count() or 1) // workers))
    context = multiprocessing.get_context("spawn")  # no inherited event loops or threads
    sock = _bind(settings)
    stop = threading.Event()

    def spawn() -> BaseProcess:
        process = context.Process(target=_worker_main, args=(settings, sock), name="gesture-maze-worker")
        process.start()
        return process

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [spawn() for _ in range(workers)]
    log.info("serving on %s:%d with %d worker processes", settings.host, settings.port, workers)
    try:
        while not stop.wait(0.5):
            for index, process in enumerate(processes):
                if not process.is_alive() and not stop.is_set():
                    log.warning("worker %s exited (%s); starting a new one", process.pid, process.exitcode)
                    time.sleep(_RESTART_DELAY_S)
                    processes[index] = spawn()
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: the worker drains its sockets with 1001 first
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
