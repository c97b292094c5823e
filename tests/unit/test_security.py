"""stream.edge.security: origin checks, the origin guard and CORS on a real Starlette app, tokens,
redaction."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from stream.edge.security import (
    REDACTED,
    RedactingFilter,
    cors_middleware,
    install_log_redaction,
    new_token,
    origin_allowed,
    redact,
    security_middleware,
    tokens_equal,
)


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "allowed", "expected"),
    [
        (None, "127.0.0.1:8000", "ws", (), True),  # non-browser client
        ("", "127.0.0.1:8000", "ws", (), True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", (), True),  # own origin
        ("http://LOCALHOST:8000", "localhost:8000", "http", (), True),  # host is case-insensitive
        ("https://maze.example", "maze.example", "wss", (), True),  # default port implied both sides
        ("https://maze.example:443", "maze.example", "https", (), True),
        ("http://maze.example", "maze.example", "wss", (), False),  # scheme differs
        ("http://127.0.0.1:8001", "127.0.0.1:8000", "ws", (), False),  # port differs
        ("http://evil.example", "127.0.0.1:8000", "ws", (), False),
        ("http://127.0.0.1.evil.example:8000", "127.0.0.1:8000", "ws", (), False),
        ("null", "127.0.0.1:8000", "ws", (), False),  # sandboxed iframe / file://
        ("garbage", "127.0.0.1:8000", "ws", (), False),
        ("http://[::1]:8000", "[::1]:8000", "ws", (), True),
        ("http://evil.example", "127.0.0.1:8000", "ws", ("*",), True),
        ("null", "x", "ws", ("*",), True),
        ("https://app.example", "api.example", "wss", ("https://app.example",), True),
        ("https://app.example", "api.example", "wss", ("https://app.example:443/",), True),
        ("https://other.example", "api.example", "wss", ("https://app.example",), False),
        ("http://app.example", "api.example", "wss", ("https://app.example",), False),
        ("http://x:99999", "x:99999", "ws", (), False),  # invalid port never matches
        ("http://evil.example", "", "ws", (), False),  # no Host header: only the allow-list counts
    ],
)
def test_origin_allowed(
    origin: str | None, host: str, scheme: str, allowed: tuple[str, ...], expected: bool
) -> None:
    assert origin_allowed(origin, host, scheme, allowed) is expected


def _app(allowed: tuple[str, ...], rejected: list[str]) -> Starlette:
    async def create(request: Request) -> JSONResponse:
        return JSONResponse({"created": True}, status_code=201)

    async def listing(request: Request) -> JSONResponse:
        return JSONResponse({"sessions": []})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"type": "welcome"})
        await websocket.close()

    return Starlette(
        routes=[
            Route("/api/sessions", create, methods=["POST"]),
            Route("/api/list", listing),
            WebSocketRoute("/ws", ws),
        ],
        middleware=security_middleware(allowed, on_reject=rejected.append),
    )


def test_guard_refuses_foreign_websocket_handshake_and_counts_it() -> None:
    rejected: list[str] = []
    with TestClient(_app((), rejected), base_url="http://127.0.0.1:8000") as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(
            "/ws", headers={"origin": "http://evil.example", "host": "127.0.0.1:8000"}
        ):
            pass
        assert refused.value.code == 1008
        with client.websocket_connect("/ws", headers={"host": "127.0.0.1:8000"}) as ws:
            assert ws.receive_json() == {"type": "welcome"}
        with client.websocket_connect(
            "/ws", headers={"origin": "http://127.0.0.1:8000", "host": "127.0.0.1:8000"}
        ) as ws:
            assert ws.receive_json() == {"type": "welcome"}
    assert rejected == ["websocket"]


def test_guard_refuses_foreign_post_but_not_get_or_own_origin() -> None:
    rejected: list[str] = []
    with TestClient(_app((), rejected), base_url="http://127.0.0.1:8000") as client:
        foreign = client.post("/api/sessions", headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert foreign.json()["error"]["code"] == "origin_not_allowed"
        assert client.post("/api/sessions").status_code == 201  # no Origin: curl, load-test tool
        assert client.post("/api/sessions", headers={"origin": "http://127.0.0.1:8000"}).status_code == 201
        listing = client.get("/api/list", headers={"origin": "http://evil.example"})
        assert listing.status_code == 200
        assert "access-control-allow-origin" not in listing.headers  # same-origin only: no CORS
    assert rejected == ["http"]


def test_allow_list_enables_cors_and_guard_for_that_origin_only() -> None:
    rejected: list[str] = []
    app = _app(("https://app.example",), rejected)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        ok = client.post("/api/sessions", headers={"origin": "https://app.example"})
        assert ok.status_code == 201
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        preflight = client.options(
            "/api/sessions",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 200
        bad_preflight = client.options(
            "/api/sessions",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        assert bad_preflight.status_code == 400
        assert client.post("/api/sessions", headers={"origin": "https://evil.example"}).status_code == 403
        with client.websocket_connect("/ws", headers={"origin": "https://app.example"}) as ws:
            assert ws.receive_json() == {"type": "welcome"}
    assert rejected == ["http"]


def test_wildcard_allows_every_origin() -> None:
    rejected: list[str] = []
    with TestClient(_app(("*",), rejected), base_url="http://127.0.0.1:8000") as client:
        response = client.post("/api/sessions", headers={"origin": "https://anything.example"})
        assert response.status_code == 201
        assert response.headers["access-control-allow-origin"] == "*"
        with client.websocket_connect("/ws", headers={"origin": "null"}) as ws:
            assert ws.receive_json() == {"type": "welcome"}
    assert rejected == []


def test_cors_middleware_absent_without_allow_list() -> None:
    assert cors_middleware(()) is None
    assert cors_middleware(("https://a.example/",)).kwargs["allow_origins"] == ["https://a.example"]


def test_tokens_equal() -> None:
    token = new_token()
    assert tokens_equal(token, str(token))
    assert not tokens_equal(token, token[:-1])
    assert not tokens_equal(token, token + "x")
    assert not tokens_equal(token, None)
    assert not tokens_equal(None, None)
    assert not tokens_equal("", "")
    assert not tokens_equal(token, "é" * 10)  # non-ASCII input must not raise (compare_digest would)


def test_new_token_is_long_random_and_url_safe() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) >= 43 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws/play/abc?token=s3cr3t", f"/ws/play/abc?token={REDACTED}"),
        ("/ws/watch/abc?token=s3cr3t&x=1", f"/ws/watch/abc?token={REDACTED}&x=1"),
        ("a=1&player_token=p&watch_token=w", f"a=1&player_token={REDACTED}&watch_token={REDACTED}"),
        ("?TOKEN=abc#frag", f"?TOKEN={REDACTED}#frag"),
        ("api_key=k&password=p", f"api_key={REDACTED}&password={REDACTED}"),
        (
            '{"player_token": "abc", "session_id": "s1"}',
            f'{{"player_token": "{REDACTED}", "session_id": "s1"}}',
        ),
        ('127.0.0.1:5 - "WebSocket /ws/play/x?token=abc" [accepted]',
         f'127.0.0.1:5 - "WebSocket /ws/play/x?token={REDACTED}" [accepted]'),
        ("/ws/play/abc", "/ws/play/abc"),
        ("monkey=banana&tokenizer_version=3", f"monkey=banana&tokenizer_version={REDACTED}"),
        ("", ""),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redacting_filter_on_uvicorn_style_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.security.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        # uvicorn's access log passes the path with its query string as an argument.
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/ws/play/s?token=TOPSECRET", "1.1", 101)
        logger.info("created %(url)s", {"url": "/ws/play/s?token=TOPSECRET"})
        logger.info("play_url=/ws/play/s?token=TOPSECRET")
    assert "TOPSECRET" not in caplog.text
    assert caplog.text.count(REDACTED) == 3


def test_install_log_redaction_is_idempotent() -> None:
    name = "test.security.install"
    install_log_redaction((name,))
    install_log_redaction((name,))
    assert sum(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters) == 1
