"""`gesture-maze serve`: one server process (stream.server.runner), or one per core
(`--workers N`, stream.server.workers)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from stream.edge.transport import raise_fd_limit
from stream.server.memory import limit_allocator_arenas
from stream.server.runner import GracefulServer, build_config
from stream.server.workers import check_workers, serve_workers
from stream.settings import Settings, SettingsError
from stream.store import StoreError, check_store_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gesture-maze serve", description="Run the Gesture Maze server.")
    parser.add_argument("--host", help="address to bind (GM_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (GM_PORT, default 8000)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="GM_LOG_LEVEL")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (e.g. one per core); more than 1 needs GM_STORE_URL=redis://...",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    overrides = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("log_level", args.log_level))
        if value is not None
    }
    try:
        settings = Settings.from_env(**overrides)
        check_store_url(settings.store_url)
        if settings.store_lease_s <= 0:
            raise SettingsError("GM_STORE_LEASE_S must be above 0")
        if args.workers != 1:
            check_workers(settings, args.workers)
    except (SettingsError, StoreError) as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    raise_fd_limit()  # before build_config: limit_concurrency is derived from it
    limit_allocator_arenas()  # before any pool starts a thread
    if args.workers > 1:
        return serve_workers(settings, args.workers)
    try:
        GracefulServer(build_config(settings)).run()
    except KeyboardInterrupt:  # uvicorn re-raises the signal after its (graceful) shutdown
        return 130
    return 0
