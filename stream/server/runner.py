"""One server process: the app under uvicorn with production-minded defaults.

- WebSocket messages up to `ws_max_size` are read, so a frame somewhat above GM_MAX_FRAME_BYTES gets
  a clear `frame_too_large` error; only a frame above ws_max_size is cut off by the transport (1009).
- Proxy headers are off unless GM_FORWARDED_ALLOW_IPS names the proxy (otherwise anyone could spoof
  X-Forwarded-For and dodge per-address limits); deploy/nginx/gesture-maze.conf is the tested proxy.
- On SIGINT/SIGTERM, `GracefulServer` drains the app first (in-flight frames finish, every socket is
  closed with 1001 "going away") before uvicorn's own shutdown, which would close sockets with 1012.
- The HTTP and WebSocket protocols are stream.edge.transport's guarded subclasses (request head
  size and time, sockets per address, fragments per message, unread pongs, invalid UTF-8); permessage-deflate
  is off (frames are JPEG: compression buys nothing and would let a small message inflate in memory).
"""

from __future__ import annotations

import logging
from socket import socket
from typing import Any

import uvicorn

from stream.edge.transport import (
    GuardedConfig,
    GuardedHttpProtocol,
    GuardedWebSocketProtocol,
    TransportLimits,
    default_limit_concurrency,
)
from stream.settings import Settings
from stream.web.app import create_app, drain

GRACEFUL_SHUTDOWN_S = 10


def ws_max_size(settings: Settings) -> int:
    return max(2 * settings.max_frame_bytes, settings.max_frame_bytes + 1024 * 1024)


class GracefulServer(uvicorn.Server):
    """uvicorn.Server that drains the Gesture Maze app before closing connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._app: Any = config.app

    async def shutdown(self, sockets: list[socket] | None = None) -> None:
        try:
            await drain(self._app)
        except Exception:
            logging.getLogger(__name__).exception("draining the app failed")
        await super().shutdown(sockets)


def build_config(settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        http=GuardedHttpProtocol,  # httptools, with head limits
        ws=GuardedWebSocketProtocol,  # websockets sans-I/O (write flow control), with frame limits
        ws_max_size=ws_max_size(settings),
        ws_per_message_deflate=False,
        limit_concurrency=settings.limit_concurrency or default_limit_concurrency(),
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )
    if settings.forwarded_allow_ips:
        options.update(proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips)
    options.update(overrides)
    return GuardedConfig(
        create_app(settings), transport_limits=TransportLimits.from_settings(settings), **options
    )
