"""REST routes: create/list/inspect sessions, health and Prometheus metrics.

Errors are always `{"error": {"code", "message"}}` with a fitting status: 400 bad body, 413 body over
GM_MAX_TEXT_BYTES (checked on Content-Length before reading), 404 unknown session, 429 session-creation
rate or live sessions per client address (with Retry-After), 503 sessions cap.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from maze import MIN_SIZE
from model.schemes import SCHEMES
from stream.edge.bodies import BodyTooLarge, read_capped
from stream.edge.limits import address_key
from stream.metrics import CONTENT_TYPE
from stream.protocol.codes import (
    BAD_REQUEST,
    BODY_TOO_LARGE,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER_FULL,
    STORE_UNAVAILABLE,
    TOO_MANY_SESSIONS,
)
from stream.sessions.game_feel import clean_name
from stream.sessions.registry import SessionLimitError
from stream.sessions.session import SessionOptions
from stream.sessions.slots import OwnerLimitError
from stream.store import StoreUnavailable
from stream.web.errors import error_response
from stream.web.services import services_of

_CREATE_FIELDS = frozenset({"width", "height", "seed", "scheme", "private", "name", "share_hand"})
_MAX_SEED = 2**63


class BadRequest(ValueError):
    pass


def _int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return value


def parse_create_body(raw: bytes, settings: Any) -> SessionOptions:
    """Strict schema for POST /api/sessions (an empty body means all defaults)."""
    if len(raw) > settings.max_text_bytes:
        raise BadRequest(f"body is limited to {settings.max_text_bytes} bytes")
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRequest("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)[:100]}")
    top = settings.maze_max_size
    width = _int_field(body, "width", settings.maze_width, MIN_SIZE, top)
    height = _int_field(body, "height", settings.maze_height, MIN_SIZE, top)
    seed = body.get("seed")
    if seed is not None and (
        not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < _MAX_SEED
    ):
        raise BadRequest("seed must be a non-negative integer below 2**63 or null")
    scheme = body.get("scheme", settings.default_scheme)
    if scheme not in SCHEMES:
        raise BadRequest(f"scheme must be one of {', '.join(SCHEMES)}")
    private = body.get("private", False)
    if not isinstance(private, bool):
        raise BadRequest("private must be true or false")
    share_hand = body.get("share_hand", False)
    if not isinstance(share_hand, bool):
        raise BadRequest("share_hand must be true or false")
    try:
        name = clean_name(body.get("name"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return SessionOptions(
        width=width,
        height=height,
        seed=seed,
        scheme=scheme,
        private=private,
        name=name,
        share_hand=share_hand,
    )


async def create_session(request: Request) -> Response:
    services = services_of(request)
    limiter = services.create_limiter
    key = address_key(request.client.host if request.client else None)
    settings = services.settings
    try:
        options = parse_create_body(await read_capped(request, settings.max_text_bytes), settings)
    except BodyTooLarge as exc:
        return error_response(413, BODY_TOO_LARGE, str(exc))
    except BadRequest as exc:
        return error_response(400, BAD_REQUEST, str(exc))
    if not limiter.allow(key):
        retry = limiter.retry_after(key)
        headers = {"Retry-After": str(max(1, math.ceil(retry)))} if math.isfinite(retry) else None
        return error_response(429, RATE_LIMITED, "too many sessions created from this address", headers)
    try:
        session = services.registry.create(options, owner=key)
        await services.durability.created(session)  # stored before its id is handed out
    except OwnerLimitError as exc:
        return error_response(429, TOO_MANY_SESSIONS, str(exc), {"Retry-After": "30"})
    except SessionLimitError as exc:
        return error_response(503, SERVER_FULL, str(exc), {"Retry-After": "30"})
    except StoreUnavailable:
        return error_response(503, STORE_UNAVAILABLE, "game storage is unreachable", {"Retry-After": "5"})
    watch_url = f"/ws/watch/{session.id}"
    body: dict[str, Any] = {
        "session_id": session.id,
        "name": session.name,
        "player_token": session.player_token,
        "play_url": f"/ws/play/{session.id}?token={session.player_token}",
        "watch_url": watch_url,
        "level": session.game.level,
        "scheme": session.scheme,
        "private": session.private,
        "maze": {"width": session.game.maze.width, "height": session.game.maze.height},
    }
    if session.watch_token is not None:
        body["watch_token"] = session.watch_token
        body["watch_url"] = f"{watch_url}?token={session.watch_token}"
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


async def list_sessions(request: Request) -> Response:
    # Every instance's public sessions (a shared store), or this one's incl. those from before a restart.
    return JSONResponse({"sessions": await services_of(request).durability.public_summaries()})


async def get_session(request: Request) -> Response:
    try:
        summary = await services_of(request).durability.summary(request.path_params["session_id"])
    except StoreUnavailable:
        return error_response(503, STORE_UNAVAILABLE, "game storage is unreachable", {"Retry-After": "5"})
    if summary is None:
        return error_response(404, NOT_FOUND, "no such session")
    return JSONResponse(summary)


async def health(request: Request) -> Response:
    services = services_of(request)
    models = services.models
    info = models.current.info if models is not None else None
    durability = services.durability
    if services.shutting_down:  # draining: readiness fails so no new player is sent here
        return JSONResponse({"status": "shutting_down"}, status_code=503)
    return JSONResponse(
        {
            "status": "ok" if info is not None and not durability.degraded else "degraded",
            "store": durability.health(),
            "uptime_s": round(time.monotonic() - services.started_at, 1),
            "sessions": len(services.registry),
            "model": {"name": info.name, "version": info.version} if info is not None else None,
            "pool": {"in_flight": services.pipeline.in_flight, "backlog": services.pipeline.backlog},
        }
    )


async def metrics(request: Request) -> Response:
    return Response(services_of(request).metrics.render(), media_type=CONTENT_TYPE)
