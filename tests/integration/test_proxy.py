"""The shipped nginx config (deploy/nginx/gesture-maze.conf) in front of the real server: what the
proxy refuses itself (oversize heads and bodies, in the app's JSON error shape) and that a whole
game (session, play socket, moves, frames) works through it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from stream.settings import Settings
from tests.support.nginx import Nginx, running_nginx
from tests.support.paths import GESTURES_DIR, require_path
from tests.support.server import live_server


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    settings = Settings.from_env({}).replace(forwarded_allow_ips="127.0.0.1")
    with live_server(settings) as backend, running_nginx(
        [f"127.0.0.1:{backend.port}"], tmp_path_factory.mktemp("proxy")
    ) as nginx:
        yield nginx


def raw_exchange(nginx: Nginx, request: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/json" in head, data[:500]
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_proxy_refuses_oversize_heads_and_bodies_as_json(proxied: Nginx) -> None:
    big_header = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    status, body = raw_exchange(proxied, big_header)
    assert (status, body["error"]["code"]) == (400, "header_too_large")  # nginx answers 400, not 431
    long_line = b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    status, body = raw_exchange(proxied, long_line)
    assert (status, body["error"]["code"]) == (414, "request_line_too_long")
    response = httpx.post(f"{proxied.http_url}/api/sessions", content=b"{" * 700_000, timeout=10)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    # ...while an ordinary request passes through to the app.
    health = httpx.get(f"{proxied.http_url}/health", timeout=10)
    assert health.status_code == 200, health.text


async def test_a_game_is_played_through_the_proxy(proxied: Nginx) -> None:
    photo = (require_path(GESTURES_DIR) / "palm.jpg").read_bytes()
    async with httpx.AsyncClient(base_url=proxied.http_url, timeout=10) as http:
        created = (await http.post("/api/sessions", json={"seed": 3})).json()
    async with connect(proxied.ws_url + created["play_url"]) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "move", "direction": "right"}))
        await ws.send(photo)
        seen: set[str] = set()
        async with asyncio.timeout(20):
            while not {"moved", "frame"} <= seen:
                message = json.loads(await ws.recv())
                if message["type"] == "state" and message.get("last_move", {}).get("source") == "keyboard":
                    seen.add("moved")
                elif message["type"] == "frame":
                    assert message["seq"] == 1 and message["hand"] is True
                    seen.add("frame")
                assert message["type"] != "error", message


def test_site_config_takes_several_backends(tmp_path: Path) -> None:
    from tests.support.nginx import render_site

    site = render_site(["127.0.0.1:9001", "127.0.0.1:9002"], 8080)
    assert "server 127.0.0.1:9001;" in site and "server 127.0.0.1:9002;" in site
    assert "listen 127.0.0.1:8080;" in site


# --- /metrics is private; every page refuses to be framed (issue #26 items 9 and 10) -------------
def test_metrics_are_refused_publicly_and_served_on_the_scrape_listener(proxied: Nginx) -> None:
    for path in ("/metrics", "/metrics?x=1", "//metrics", "/%6Detrics", "/metrics/", "/metrics/../metrics"):
        response = httpx.get(f"{proxied.http_url}{path}", timeout=10)
        assert response.status_code == 404, (path, response.status_code, response.text[:200])
        assert "gesture_maze_" not in response.text, path
    head = httpx.head(f"{proxied.http_url}/metrics", timeout=10)
    assert head.status_code == 404
    # The scrape listener (bound to 127.0.0.1): /metrics from the backend, nothing else.
    assert proxied.metrics_port is not None
    scrape = f"http://127.0.0.1:{proxied.metrics_port}"
    response = httpx.get(f"{scrape}/metrics", timeout=10)
    assert response.status_code == 200 and "gesture_maze_sessions" in response.text, response.text[:300]
    other = httpx.get(f"{scrape}/api/sessions", timeout=10)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    # Its allow-list: another address (here another loopback one) is refused even if it gets through.
    outsider = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=10)
    with outsider:
        refused = outsider.get(f"{scrape}/metrics")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", refused.text


def test_pages_and_refusals_through_the_proxy_forbid_framing(proxied: Nginx) -> None:
    for path in ("/", "/watch.html", "/lobby.html", "/health", "/metrics", "/no/such/page"):
        response = httpx.get(f"{proxied.http_url}{path}", timeout=10)
        # Once each: the app's own headers pass, nginx adds them only where the app did not answer.
        assert response.headers.get_list("x-frame-options") == ["DENY"], (path, response.headers)
        csp = response.headers.get_list("content-security-policy")
        assert len(csp) == 1 and "frame-ancestors 'none'" in csp[0], (path, csp)
    big = httpx.post(f"{proxied.http_url}/api/sessions", content=b"{" * 700_000, timeout=10)
    assert big.status_code == 413 and big.headers["x-frame-options"] == "DENY"  # nginx's own answer


def test_cluster_proxy_refuses_metrics(tmp_path: Path) -> None:
    from tests.support.nginx_proxy import nginx_proxy

    with live_server(Settings.from_env({})) as backend, nginx_proxy(
        [f"127.0.0.1:{backend.port}"], tmp_path / "cluster"
    ) as base:
        response = httpx.get(f"{base}/metrics", timeout=10)
        assert response.status_code == 404 and "gesture_maze_" not in response.text
        page = httpx.get(f"{base}/", timeout=10)
        assert page.status_code == 200 and page.headers.get_list("x-frame-options") == ["DENY"]
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
