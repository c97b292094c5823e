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

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from maze import MIN_SIZE
from model.schemes import SCHEMES
from stream.edge.bodies import BodyTimeout, BodyTooLarge, declared_length, read_capped
from stream.edge.limits import address_key
from stream.metrics import CONTENT_TYPE
from stream.protocol.codes import (
    BAD_REQUEST,
    BODY_TIMEOUT,
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
    # Admission first, from the request head: a refused request costs no body read and no parse. A
    # declared oversize body is told so (413) without taking one of the address's creations.
    declared = declared_length(request)
    if declared is not None and declared > settings.max_text_bytes:
        return error_response(413, BODY_TOO_LARGE, str(BodyTooLarge(settings.max_text_bytes, declared)))
    if not limiter.allow(key):
        retry = limiter.retry_after(key)
        headers = {"Retry-After": str(max(1, math.ceil(retry)))} if math.isfinite(retry) else None
        return error_response(429, RATE_LIMITED, "too many sessions created from this address", headers)
    registry = services.registry
    try:
        raw = await read_capped(request, settings.max_text_bytes, settings.body_timeout_s or None)
        # On the loop on purpose: json.loads of <= GM_MAX_TEXT_BYTES (4 KiB) is one C call holding the
        # GIL (< 1 ms measured for the costliest shapes), which a thread would not make cheaper for the
        # loop; what bounds it is the rate limit above (docs/security.md, "Bodies").
        options = parse_create_body(raw, settings)
    except BodyTooLarge as exc:
        return error_response(413, BODY_TOO_LARGE, str(exc))
    except BodyTimeout as exc:
        return error_response(408, BODY_TIMEOUT, str(exc))
    except BadRequest as exc:
        return error_response(400, BAD_REQUEST, str(exc))
    try:
        registry.check_room(key)  # before building the maze: a refusal costs nothing
        game = await run_in_threadpool(registry.new_game, options)  # CPU work, off the event loop
        session = registry.create(options, owner=key, game=game)
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


def _page_params(request: Request, max_page: int) -> tuple[int, int]:
    def number(name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise BadRequest(f"{name} must be an integer from {low} to {high}")
        return int(raw)

    return number("offset", 0, 0, 1_000_000), number("limit", max_page, 1, max_page)


def _read_refused(request: Request) -> Response | None:
    """429 when this address reads the lobby or sessions faster than GM_API_READS_PER_10S."""
    limiter = services_of(request).read_limiter
    key = address_key(request.client.host if request.client else None)
    if limiter.allow(key):
        return None
    retry = limiter.retry_after(key)
    headers = {"Retry-After": str(max(1, math.ceil(retry)))} if math.isfinite(retry) else None
    return error_response(429, RATE_LIMITED, "too many requests from this address: wait a moment", headers)


async def list_sessions(request: Request) -> Response:
    """Every instance's public games (a shared store), or this one's incl. those from before a
    restart; by page (`?offset=&limit=`), from the lobby's cached snapshot (stream.durability.lobby)."""
    services = services_of(request)
    refused = _read_refused(request)
    if refused is not None:
        return refused
    try:
        offset, limit = _page_params(request, services.settings.lobby_page_size)
    except BadRequest as exc:
        return error_response(400, BAD_REQUEST, str(exc))
    page = await services.durability.lobby.page(offset, limit)
    headers = {"X-Total-Count": str(page.total), "Cache-Control": "no-store"}
    if page.next_offset is not None:
        headers["Link"] = f'</api/sessions?offset={page.next_offset}&limit={limit}>; rel="next"'
    return Response(page.body, media_type="application/json", headers=headers)


async def get_session(request: Request) -> Response:
    refused = _read_refused(request)
    if refused is not None:
        return refused
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
