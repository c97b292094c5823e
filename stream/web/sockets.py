"""WebSocket plumbing shared by both endpoints, and the read-only spectator endpoint `/ws/watch/{id}`.

Refusals follow the protocol: accept, send `{"type":"error"}`, close with 1008, so a client always
learns why. (A foreign Origin is refused earlier, before accept, by stream.edge.security's middleware.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from stream.edge.connection import Connection
from stream.edge.limits import address_key
from stream.protocol import (
    CLOSE_POLICY,
    READ_ONLY,
    SHUTTING_DOWN,
    STORE_UNAVAILABLE,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_SPECTATORS,
    ErrorMessage,
    Limits,
    StateSnapshot,
    Welcome,
    encode,
)
from stream.sessions.registry import Session, SessionLimitError, watch_allowed
from stream.store import StoreUnavailable

_REFUSE_TIMEOUT_S = 2.0


async def refuse(websocket: WebSocket, code: str, message: str) -> None:
    """Tell the client why, then close with 1008 (policy violation)."""
    metrics = websocket.app.state.metrics
    metrics.errors.labels(code=code).inc()
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
    state = websocket.app.state
    if getattr(state, "shutting_down", False):
        await refuse(websocket, SHUTTING_DOWN, "the server is shutting down")
        yield False
        return
    limiter = state.connection_limiter
    key = client_key(websocket)
    if not limiter.acquire(key):
        await refuse(websocket, TOO_MANY_CONNECTIONS, "too many open connections from this address")
        yield False
        return
    state.metrics.connections.labels(role=role).inc()
    try:
        yield True
    finally:
        state.metrics.connections.labels(role=role).dec()
        limiter.release(key)


def new_connection(
    websocket: WebSocket, role: str, latest_state: Callable[[], StateSnapshot | None]
) -> Connection:
    state = websocket.app.state
    settings, metrics = state.settings, state.metrics
    dropped = metrics.messages_dropped.labels(role=role)
    return Connection(
        websocket,
        role,
        queue_size=settings.send_queue_size,
        send_timeout_s=settings.send_timeout_s,
        on_drop=dropped.inc,
        latest_state=latest_state,
    )


def welcome(websocket: WebSocket, role: str, session_id: str, scheme: str, resumed: bool = False) -> Welcome:
    settings = websocket.app.state.settings
    return Welcome(
        role=role,
        session_id=session_id,
        scheme=scheme,
        limits=Limits(max_frame_bytes=settings.max_frame_bytes, max_fps=settings.max_fps),
        server_time=round(time.time(), 3),
        resumed=resumed,
    )


def send_error(conn: Connection, metrics: Any, code: str, message: str) -> None:
    metrics.errors.labels(code=code).inc()
    conn.send(ErrorMessage(code, message))


async def find_session(websocket: WebSocket, role: str) -> tuple[Session | None, bool]:
    """(session, restored): the session named in the path if this client may join it as `role`
    (restored from the store if needed; for a player, with this instance holding its lease);
    otherwise the socket is refused (1008) and the session is None."""
    durability = websocket.app.state.durability
    session_id = websocket.path_params["session_id"]
    token = websocket.query_params.get("token")
    try:
        if role == "player":
            session, restored = await durability.for_player(session_id, token)
        else:
            session, restored = await durability.local(session_id)
    except PermissionError as exc:
        await refuse(websocket, "forbidden", str(exc))
        return None, False
    except StoreUnavailable:
        await refuse(websocket, STORE_UNAVAILABLE, "game storage is unreachable: try again in a moment")
        return None, False
    except SessionLimitError as exc:
        await refuse(websocket, "server_full", str(exc))
        return None, False
    if session is None:
        await refuse(websocket, "not_found", "no such session")
        return None, False
    if role == "spectator" and not session.watch_token_ok(token):
        await refuse(websocket, "forbidden", "this session is private: a valid watch token is needed")
        return None, False
    return session, restored


async def watch_endpoint(websocket: WebSocket) -> None:
    state = websocket.app.state
    if state.durability.shared:
        await watch_remote(websocket)
        return
    session, _ = await find_session(websocket, "spectator")
    if session is None:
        return
    async with admitted(websocket, "spectator") as ok:
        if not ok:
            return
        # Reserve the seat before awaiting accept(), so concurrent handshakes cannot overshoot the cap.
        if len(session.spectators) + session.joining_spectators >= state.settings.max_spectators:
            await refuse(websocket, TOO_MANY_SPECTATORS, "this session has the maximum number of spectators")
            return
        session.joining_spectators += 1
        try:
            await websocket.accept()
        finally:
            session.joining_spectators -= 1
        conn = new_connection(websocket, "spectator", session.latest_state)
        conn.send(welcome(websocket, "spectator", session.id, session.scheme))
        session.add_spectator(conn)
        try:
            await conn.serve(_spectator_reader(websocket, conn, state.metrics))
        finally:
            session.remove_spectator(conn)


async def _spectator_reader(websocket: WebSocket, conn: Connection, metrics: Any) -> None:
    # Spectators are read-only: everything they send is answered, nothing is acted on.
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        send_error(conn, metrics, READ_ONLY, "spectators cannot send messages")
        await asyncio.sleep(0)  # a flooding spectator must not monopolise the loop


async def watch_remote(websocket: WebSocket) -> None:
    """`/ws/watch/{id}` on a shared store: the game may run on any instance (stream.durability.relay)."""
    state = websocket.app.state
    durability, hub = state.durability, state.durability.hub
    session_id = websocket.path_params["session_id"]
    try:
        record = await durability.load(session_id)
    except StoreUnavailable:
        await refuse(websocket, STORE_UNAVAILABLE, "game storage is unreachable: try again in a moment")
        return
    if record is None:
        await refuse(websocket, "not_found", "no such session")
        return
    token = websocket.query_params.get("token")
    if not watch_allowed(not record.public, record.player_token_hash, record.watch_token_hash, token):
        await refuse(websocket, "forbidden", "this session is private: a valid watch token is needed")
        return
    async with admitted(websocket, "spectator") as ok:
        if not ok:
            return
        if hub.spectators(session_id) >= state.settings.max_spectators:
            await refuse(websocket, TOO_MANY_SPECTATORS, "this session has the maximum number of spectators")
            return
        watch = hub.reserve(session_id)
        try:
            await websocket.accept()
        except BaseException:
            hub.unreserve(watch)
            raise
        conn = new_connection(websocket, "spectator", watch.latest_state)
        conn.send(welcome(websocket, "spectator", session_id, str(record.options.get("scheme", ""))))
        if not await hub.join(watch, conn):
            await refuse(websocket, "not_found", "no such session")
            return
        try:
            await conn.serve(_spectator_reader(websocket, conn, state.metrics))
        finally:
            hub.leave(watch, conn)
