"""WebSocket plumbing shared by the play and watch endpoints: admission, refusals, connections.

Refusals follow the protocol: accept, send `{"type":"error"}`, close with 1008, so a client always
learns why. (A foreign Origin or Host, or an address over its handshake rate, is refused earlier,
before accept, by stream.edge's guards.)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from stream.edge.connection import Connection
from stream.edge.limits import address_key
from stream.metrics import Metrics
from stream.protocol.codes import (
    CLOSE_POLICY,
    FORBIDDEN,
    NOT_FOUND,
    SERVER_FULL,
    SHUTTING_DOWN,
    STORE_UNAVAILABLE,
    TOO_MANY_CONNECTIONS,
)
from stream.protocol.server import ErrorMessage, Limits, StateSnapshot, Welcome, encode
from stream.sessions.registry import SessionLimitError
from stream.sessions.session import Session
from stream.store import StoreUnavailable
from stream.web.services import services_of

STORE_AWAY = "game storage is unreachable: try again in a moment"
NO_SUCH_SESSION = "no such session"
PRIVATE_SESSION = "this session is private: a valid watch token is needed"


async def refuse(websocket: WebSocket, code: str, message: str) -> None:
    """Tell the client why, then close with 1008 (policy violation)."""
    services_of(websocket).metrics.errors.labels(code=code).inc()
    with contextlib.suppress(Exception):  # the client may already be gone: nothing to tell then
        if websocket.application_state is WebSocketState.CONNECTING:
            await websocket.accept()
        await websocket.send_text(encode(ErrorMessage(code, message)))
        await websocket.close(CLOSE_POLICY, message[:120])


def client_key(websocket: WebSocket) -> str:
    return address_key(websocket.client.host if websocket.client else None)


@contextlib.asynccontextmanager
async def admitted(websocket: WebSocket, role: str) -> AsyncIterator[bool]:
    """Per-address connection cap + shutdown check; yields False after refusing the socket."""
    services = services_of(websocket)
    if services.shutting_down:
        await refuse(websocket, SHUTTING_DOWN, "the server is shutting down")
        yield False
        return
    limiter = services.connection_limiter
    key = client_key(websocket)
    if not limiter.acquire(key):
        await refuse(websocket, TOO_MANY_CONNECTIONS, "too many open connections from this address")
        yield False
        return
    services.metrics.connections.labels(role=role).inc()
    try:
        yield True
    finally:
        services.metrics.connections.labels(role=role).dec()
        limiter.release(key)


def new_connection(
    websocket: WebSocket, role: str, latest_state: Callable[[], StateSnapshot | None]
) -> Connection:
    services = services_of(websocket)
    settings = services.settings
    dropped = services.metrics.messages_dropped.labels(role=role)
    return Connection(
        websocket,
        role,
        queue_size=settings.send_queue_size,
        send_timeout_s=settings.send_timeout_s,
        on_drop=dropped.inc,
        latest_state=latest_state,
    )


def welcome(
    websocket: WebSocket, role: str, session_id: str, scheme: str, resumed: bool = False,
    calibration: dict[str, Any] | None = None,
) -> Welcome:
    settings = services_of(websocket).settings
    return Welcome(
        role=role,
        session_id=session_id,
        scheme=scheme,
        limits=Limits(max_frame_bytes=settings.max_frame_bytes, max_fps=settings.max_fps),
        server_time=round(time.time(), 3),
        resumed=resumed,
        calibration=calibration,
    )


def send_error(conn: Connection, metrics: Metrics, code: str, message: str) -> None:
    metrics.errors.labels(code=code).inc()
    conn.send(ErrorMessage(code, message))


async def find_session(websocket: WebSocket, role: str) -> Session | None:
    """The session named in the path if this client may join it as `role` (restored from the
    store if needed; for a player, with this instance holding its lease); otherwise the socket is
    refused (1008) and the answer is None."""
    durability = services_of(websocket).durability
    session_id = websocket.path_params["session_id"]
    token = websocket.query_params.get("token")
    try:
        if role == "player":
            session, _ = await durability.for_player(session_id, token)
        else:
            session, _ = await durability.local(session_id)
    except PermissionError as exc:
        await refuse(websocket, FORBIDDEN, str(exc))
        return None
    except StoreUnavailable:
        await refuse(websocket, STORE_UNAVAILABLE, STORE_AWAY)
        return None
    except SessionLimitError as exc:
        await refuse(websocket, SERVER_FULL, str(exc))
        return None
    if session is None:
        await refuse(websocket, NOT_FOUND, NO_SUCH_SESSION)
        return None
    if role == "spectator" and not session.watch_token_ok(token):
        await refuse(websocket, FORBIDDEN, PRIVATE_SESSION)
        return None
    return session
