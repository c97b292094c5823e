"""The read-only spectator endpoint `/ws/watch/{id}[?token=...]`.

With a local store the session runs here and the spectator joins its audience; on a shared store
the game may run on any instance and this one relays its channel (stream.durability.relay).
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from stream.edge.connection import Connection
from stream.metrics import Metrics
from stream.protocol.codes import FORBIDDEN, NOT_FOUND, READ_ONLY, STORE_UNAVAILABLE, TOO_MANY_SPECTATORS
from stream.sessions.session import watch_allowed
from stream.store import StoreUnavailable
from stream.web.services import services_of
from stream.web.sockets import (
    NO_SUCH_SESSION,
    PRIVATE_SESSION,
    STORE_AWAY,
    admitted,
    find_session,
    new_connection,
    refuse,
    send_error,
    welcome,
)

_FULL = "this session has the maximum number of spectators"


async def watch_endpoint(websocket: WebSocket) -> None:
    services = services_of(websocket)
    if services.durability.shared:
        await watch_remote(websocket)
        return
    session = await find_session(websocket, "spectator")
    if session is None:
        return
    async with admitted(websocket, "spectator") as ok:
        if not ok:
            return
        audience = session.audience
        # Reserve the seat before awaiting accept(), so concurrent handshakes cannot overshoot the cap.
        if audience.seats_taken() >= services.settings.max_spectators:
            await refuse(websocket, TOO_MANY_SPECTATORS, _FULL)
            return
        audience.joining += 1
        try:
            await websocket.accept()
        finally:
            audience.joining -= 1
        conn = new_connection(websocket, "spectator", session.latest_state)
        conn.send(welcome(websocket, "spectator", session.id, session.scheme))
        session.add_spectator(conn)
        try:
            await conn.serve(_spectator_reader(websocket, conn, services.metrics))
        finally:
            session.remove_spectator(conn)


async def _spectator_reader(websocket: WebSocket, conn: Connection, metrics: Metrics) -> None:
    # Spectators are read-only: everything they send is answered, nothing is acted on.
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        send_error(conn, metrics, READ_ONLY, "spectators cannot send messages")
        await asyncio.sleep(0)  # a flooding spectator must not monopolise the loop


async def watch_remote(websocket: WebSocket) -> None:
    """`/ws/watch/{id}` on a shared store: the game may run on any instance (stream.durability.relay)."""
    services = services_of(websocket)
    durability = services.durability
    hub = durability.hub
    assert hub is not None  # a shared store always has its relay
    session_id = websocket.path_params["session_id"]
    try:
        record = await durability.load(session_id)
    except StoreUnavailable:
        await refuse(websocket, STORE_UNAVAILABLE, STORE_AWAY)
        return
    if record is None:
        await refuse(websocket, NOT_FOUND, NO_SUCH_SESSION)
        return
    token = websocket.query_params.get("token")
    if not watch_allowed(not record.public, record.player_token_hash, record.watch_token_hash, token):
        await refuse(websocket, FORBIDDEN, PRIVATE_SESSION)
        return
    async with admitted(websocket, "spectator") as ok:
        if not ok:
            return
        if hub.spectators(session_id) >= services.settings.max_spectators:
            await refuse(websocket, TOO_MANY_SPECTATORS, _FULL)
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
            await refuse(websocket, NOT_FOUND, NO_SUCH_SESSION)
            return
        try:
            await conn.serve(_spectator_reader(websocket, conn, services.metrics))
        finally:
            hub.leave(watch, conn)
