"""Play and watch over real sockets: uvicorn on a loopback port, `websockets` clients, real mazes."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from maze import Direction, Maze, Point, solve
from stream.settings import Settings
from tests.support.server import LiveServer, live_server

TIMEOUT = 10.0


@pytest.fixture
def small(settings: Settings) -> Iterator[LiveServer]:
    with live_server(settings, maze_width=5, maze_height=5) as running:
        yield running


async def http(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        return await client.request(method, url, **kwargs)


async def create_session(server: LiveServer, **body: Any) -> dict[str, Any]:
    response = await http("POST", f"{server.http_url}/api/sessions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def recv(ws: ClientConnection, wait: float = TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), wait))


async def recv_type(ws: ClientConnection, kind: str, wait: float = TIMEOUT) -> dict[str, Any]:
    """Skip other messages (e.g. presence states) until one of type `kind` arrives."""
    while True:
        message = await recv(ws, wait)
        if message["type"] == kind:
            return message


def maze_of(state: dict[str, Any]) -> Maze:
    return Maze.from_dict(
        state["maze"], start=Point(**state["start"]), goal=Point(**state["goal"])
    )


async def expect_refusal(url: str, code: str) -> None:
    """The protocol's refusal: an `error` with `code`, then close 1008."""
    async with connect(url) as ws:
        message = await recv(ws)
        assert message == {"type": "error", "code": code, "message": message["message"]}
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_player_solves_while_three_spectators_see_the_same_states(small: LiveServer) -> None:
    created = await create_session(small, seed=7)
    assert created["maze"] == {"width": 5, "height": 5} and created["level"] == 1
    sid = created["session_id"]
    spectators = [await connect(f"{small.ws_url}/ws/watch/{sid}") for _ in range(3)]
    seen: list[list[dict[str, Any]]] = [[] for _ in spectators]
    try:
        for ws in spectators:
            welcome = await recv(ws)
            assert welcome["type"] == "welcome" and welcome["role"] == "spectator"
            first = await recv_type(ws, "state")
            assert first["maze"]["width"] == 5  # the first state of a connection carries the maze
        async with connect(f"{small.ws_url}{created['play_url']}") as player:
            welcome = await recv(player)
            assert welcome["type"] == "welcome" and welcome["role"] == "player"
            assert welcome["limits"]["max_frame_bytes"] == small.settings.max_frame_bytes
            state = await recv_type(player, "state")
            assert state["player_connected"] is True and state["spectators"] == 3
            joined_version = state["version"]
            path = solve(maze_of(state), Point(**state["player"]))
            # A wall bump first: answered, not counted, player does not move.
            blocked = next(d for d in Direction if not maze_of(state).can_move(Point(0, 0), d))
            await player.send(json.dumps({"type": "move", "direction": blocked.value}))
            bump = await recv_type(player, "state")
            assert bump["last_move"] == {"direction": blocked.value, "ok": False, "source": "keyboard"}
            assert bump["player"] == {"x": 0, "y": 0} and bump["moves"] == 0
            for direction in path:  # pipelined: the server must keep order
                await player.send(json.dumps({"type": "move", "direction": direction.value}))
            player_states = [await recv_type(player, "state") for _ in path]
            assert [s["last_move"]["direction"] for s in player_states] == [d.value for d in path]
            assert all(s["last_move"]["ok"] for s in player_states)
            assert [s["moves"] for s in player_states] == list(range(1, len(path) + 1))
            assert player_states[-1]["player"] == state["goal"] and player_states[-1]["status"] == "won"
            assert "maze" not in player_states[0]  # only on a connection's first state / a new maze
            won = await recv_type(player, "won")
            assert won["level"] == 1 and won["moves"] == len(path)
            versions = [s["version"] for s in [bump, *player_states]]
            assert versions == list(range(joined_version + 1, joined_version + len(path) + 2))

            for index, ws in enumerate(spectators):
                while True:
                    message = await recv(ws)
                    if message["type"] == "won":
                        break
                    if message["type"] == "state" and message["version"] > joined_version:
                        seen[index].append(message)
            def key(s: dict[str, Any]) -> tuple[Any, ...]:
                return s["version"], s["player"], s["moves"], s["last_move"]

            expected = [key(s) for s in [bump, *player_states]]
            for states in seen:
                assert [key(s) for s in states] == expected
    finally:
        for ws in spectators:
            await ws.close()


async def test_win_announces_then_starts_a_bigger_level(small: LiveServer) -> None:
    created = await create_session(small, seed=3)
    async with connect(f"{small.ws_url}{created['play_url']}") as player:
        state = await recv_type(player, "state")
        for direction in solve(maze_of(state), Point(0, 0)):
            await player.send(json.dumps({"type": "move", "direction": direction.value}))
        won = await recv_type(player, "won")
        assert won["level"] == 1 and won["elapsed_s"] >= 0
        # Moves after the win are refused, not applied; the level waits for `next_level`.
        await player.send(json.dumps({"type": "move", "direction": "up"}))
        assert (await recv_type(player, "error"))["code"] == "not_playing"
        await player.send(json.dumps({"type": "next_level"}))
        nxt = await recv_type(player, "state", wait=small.settings.session_grace_s)
        while nxt["level"] == 1:
            nxt = await recv_type(player, "state")
        assert nxt["level"] == 2 and nxt["status"] == "playing" and nxt["moves"] == 0
        assert nxt["maze"]["width"] == 5 + small.settings.level_growth
        assert nxt["player"] == {"x": 0, "y": 0}
    summary = (await http("GET", f"{small.http_url}/api/sessions/{created['session_id']}")).json()
    assert summary["level"] == 2 and summary["width"] == 7


async def test_refusals_unknown_session_and_wrong_token(small: LiveServer) -> None:
    created = await create_session(small)
    sid = created["session_id"]
    await expect_refusal(f"{small.ws_url}/ws/play/nope?token=x", "not_found")
    await expect_refusal(f"{small.ws_url}/ws/watch/nope", "not_found")
    await expect_refusal(f"{small.ws_url}/ws/play/{sid}?token=wrong", "forbidden")
    await expect_refusal(f"{small.ws_url}/ws/play/{sid}", "forbidden")


async def test_private_session_needs_the_watch_token(small: LiveServer) -> None:
    created = await create_session(small, private=True)
    sid = created["session_id"]
    assert created["watch_url"] == f"/ws/watch/{sid}?token={created['watch_token']}"
    listed = (await http("GET", f"{small.http_url}/api/sessions")).json()["sessions"]
    assert sid not in {s["session_id"] for s in listed}
    await expect_refusal(f"{small.ws_url}/ws/watch/{sid}", "forbidden")
    await expect_refusal(f"{small.ws_url}/ws/watch/{sid}?token={created['player_token']}x", "forbidden")
    async with connect(f"{small.ws_url}{created['watch_url']}") as ws:
        assert (await recv(ws))["role"] == "spectator"


async def test_spectator_is_read_only_and_stays_open(small: LiveServer) -> None:
    created = await create_session(small, seed=1)
    async with connect(f"{small.ws_url}/ws/watch/{created['session_id']}") as ws:
        await recv_type(ws, "state")
        await ws.send(json.dumps({"type": "move", "direction": "right"}))
        assert (await recv_type(ws, "error"))["code"] == "read_only"
        await ws.send(b"\xff\xd8\xff not really a frame")
        assert (await recv_type(ws, "error"))["code"] == "read_only"
        async with connect(f"{small.ws_url}{created['play_url']}") as player:
            state = await recv_type(player, "state")
            direction = solve(maze_of(state), Point(0, 0))[0]
            await player.send(json.dumps({"type": "move", "direction": direction.value}))
            moved = await recv_type(player, "state")
        # The spectator is still connected and saw the player's move (the spectator's move never happened).
        while True:
            seen = await recv_type(ws, "state")
            if seen["version"] == moved["version"]:
                break
        assert seen["player"] == moved["player"] and seen["moves"] == 1


async def test_bad_text_messages_get_errors_and_the_session_goes_on(small: LiveServer) -> None:
    created = await create_session(small)
    async with connect(f"{small.ws_url}{created['play_url']}") as player:
        await recv_type(player, "state")
        cases = [
            ("not json", "bad_json"),
            ("[1, 2]", "bad_message"),
            ('{"type": "fly"}', "unknown_type"),
            ('{"type": "move", "direction": "north"}', "bad_field"),
            ('{"type": "move"}', "bad_field"),
            ('{"type": "move", "direction": "up", "extra": 1}', "bad_field"),
            ("[" * 10_000 + "]" * 10_000, "message_too_large"),
            ('{"type": "next_level"}', "not_won"),
        ]
        for text, code in cases:
            await player.send(text)
            error = await recv_type(player, "error")
            assert error["code"] == code, text[:40]
        await player.send(json.dumps({"type": "ping", "t": 12.5}))
        assert await recv_type(player, "pong") == {"type": "pong", "t": 12.5}
        await player.send(json.dumps({"type": "scheme", "scheme": "pointing"}))
        assert (await recv_type(player, "state"))["scheme"] == "pointing"
        await player.send(json.dumps({"type": "restart"}))
        restarted = await recv_type(player, "state")
        assert "maze" in restarted and restarted["moves"] == 0


async def test_binary_frame_gets_a_frame_reply_or_an_error(small: LiveServer, gestures_dir: Path) -> None:
    created = await create_session(small)
    photo = (gestures_dir / "palm.jpg").read_bytes()
    async with connect(f"{small.ws_url}{created['play_url']}") as player:
        await recv_type(player, "state")
        await player.send(b"definitely not a jpeg")
        assert (await recv_type(player, "error", wait=30))["code"] == "not_jpeg"
        await player.send(b"")
        assert (await recv_type(player, "error", wait=30))["code"] == "empty_frame"
        await player.send(photo)
        reply = await recv_type(player, "frame", wait=60)
        assert reply["seq"] == 3 and reply["hand"] is True and isinstance(reply["gesture"], str)
        assert 0 < reply["confidence"] <= 1 and reply["processing_ms"] > 0 and reply["dropped"] == 0
        assert len(reply["landmarks"]) == 21
        assert all(0 <= x <= 1 and 0 <= y <= 1 for x, y in reply["landmarks"])
    metrics = (await http("GET", f"{small.http_url}/metrics")).text
    assert re.search(r'gesture_maze_frames_invalid_total\{reason="not_jpeg"\} 1\.0', metrics)
    assert re.search(r'gesture_maze_errors_total\{code="not_jpeg"\} 1\.0', metrics)


def _raw_websocket(port: int, path: str) -> socket.socket:
    """A WebSocket client that never reads: tiny receive buffer, handshake by hand."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


async def test_a_spectator_that_never_reads_does_not_slow_the_player(settings: Settings) -> None:
    """Outbox overflow -> resync (messages dropped, bounded queue); a blocked send -> cut off (4001)."""
    # The text-rate cap is off here: this test needs the flood of restarts to reach the outboxes.
    tight = settings.replace(
        send_queue_size=4, send_timeout_s=1.0, maze_width=40, maze_height=40, max_text_per_s=0
    )
    with live_server(tight) as server:
        created = await create_session(server, seed=11)
        stuck = _raw_websocket(server.port, f"/ws/watch/{created['session_id']}")
        try:
            async with connect(f"{server.ws_url}{created['play_url']}") as player:
                first = await recv_type(player, "state")
                assert first["spectators"] == 1
                # Each restart fans a full 40x40 state (maze included, ~6 kB) out to everyone: a few MB
                # are needed to fill the socket buffers between the server and the stuck reader.
                received: list[dict[str, Any]] = []
                while len(received) < 5000 and (not received or received[-1]["spectators"] == 1):
                    for _ in range(50):
                        await player.send('{"type":"restart"}')
                    received.extend([await recv_type(player, "state") for _ in range(50)])
                    for session in server.app.state.services.registry:
                        assert all(conn.queued <= 4 + 1 for conn in session.audience.connections())  # bounded
                # The stuck spectator was cut off; the player got every state, in order, with no gap.
                assert received[-1]["spectators"] == 0
                versions = [s["version"] for s in received]
                assert versions == list(range(versions[0], versions[0] + len(versions)))
            metrics = (await http("GET", f"{server.http_url}/metrics")).text
            dropped = re.search(r'gesture_maze_messages_dropped_total\{role="spectator"\} (\S+)', metrics)
            assert dropped is not None and float(dropped.group(1)) > 0
            assert not re.search(r'gesture_maze_messages_dropped_total\{role="player"\} [1-9]', metrics)
        finally:
            stuck.close()
