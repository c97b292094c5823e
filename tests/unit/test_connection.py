"""The per-connection outbox: order, overflow policy (resync with ONE full state), close, send timeout.

The socket is a small in-memory stand-in whose sends can be held back, so a slow client is simulated
exactly (no timing assertions: the test decides when the client "reads").
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from stream.edge.connection import Connection, ConnectionState
from stream.protocol import ErrorMessage, Pong, StateSnapshot, Won


class HeldSocket:
    """Records sent texts; while `gate` is clear, every send blocks (a client that does not read)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str | None] | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_text(self, data: str) -> None:
        await self.gate.wait()
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)


def snapshot(version: int, maze_version: int = 1, maze_changed: bool = False) -> StateSnapshot:
    body = {"type": "state", "version": version}
    return StateSnapshot(version, maze_version, maze_changed, body, {"width": 5, "height": 5, "cells": []})


async def drain(conn: Connection) -> None:
    for _ in range(100):
        if conn.queued == 0:
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_messages_go_out_in_order_and_only_the_first_state_carries_the_maze() -> None:
    sock = HeldSocket()
    conn = Connection(sock, "spectator", queue_size=8, send_timeout_s=5)
    sender = asyncio.create_task(conn.run_sender())
    conn.send(Pong(1))
    for version in (1, 2, 3):
        conn.send_state(snapshot(version))
    conn.send_state(snapshot(4, maze_version=2, maze_changed=True))
    conn.send_state(snapshot(5, maze_version=2))
    await drain(conn)
    assert [m["type"] for m in sock.sent] == ["pong", "state", "state", "state", "state", "state"]
    assert [m.get("version") for m in sock.sent[1:]] == [1, 2, 3, 4, 5]
    assert ["maze" in m for m in sock.sent[1:]] == [True, False, False, True, False]
    sender.cancel()


async def test_overflow_replaces_stale_states_with_one_full_state_and_keeps_won_and_errors() -> None:
    sock = HeldSocket()
    drops: list[int] = []
    latest = {"state": snapshot(1)}
    conn = Connection(
        sock,
        "spectator",
        queue_size=4,
        send_timeout_s=60,
        on_drop=drops.append,
        latest_state=lambda: latest["state"],
    )
    sender = asyncio.create_task(conn.run_sender())
    conn.send_state(snapshot(1))
    await drain(conn)  # first state delivered (with maze)
    sock.gate.clear()  # the client stops reading
    conn.send_state(snapshot(2))
    await drain(conn)  # taken by the sender, which is now blocked in send_text
    conn.send(Won(1, 10, 3.2))
    conn.send_error("rate_limited", "slow down")
    conn.send_state(snapshot(3))
    conn.send_state(snapshot(4))
    assert conn.queued == 4
    conn.send_state(snapshot(5))  # overflow: states 3, 4 dropped, 5 queued in full
    assert conn.queued == 3 and sum(drops) == 2 and conn.resyncs == 1
    latest["state"] = snapshot(6)
    conn.send(Pong(9))
    conn.send(Pong(10))  # full again: a non-state overflow resyncs to the session's latest state
    assert conn.queued <= 4
    sock.gate.set()
    await drain(conn)
    kinds = [(m["type"], m.get("version"), "maze" in m) for m in sock.sent]
    assert kinds[:2] == [("state", 1, True), ("state", 2, False)]
    rest = kinds[2:]
    assert ("won", None, False) in rest and ("error", None, False) in rest
    assert ("state", 3, False) not in rest and ("state", 4, False) not in rest
    assert rest[-2:] == [("state", 6, True), ("pong", None, False)]
    versions = [v for kind, v, _ in kinds if kind == "state"]
    assert versions == sorted(versions)  # never goes back in time
    sender.cancel()


async def test_close_is_sent_after_the_queued_error() -> None:
    sock = HeldSocket()
    conn = Connection(sock, "player", queue_size=4, send_timeout_s=5)
    conn.send(ErrorMessage("forbidden", "no"))
    conn.close(1008, "forbidden")
    conn.send(Pong(1))  # after close: ignored
    assert conn.state is ConnectionState.CLOSING
    await asyncio.wait_for(conn.run_sender(), 5)
    assert [m["type"] for m in sock.sent] == ["error"]
    assert sock.closed == (1008, "forbidden") and conn.close_code == 1008
    assert conn.state is ConnectionState.CLOSED


async def test_a_send_that_blocks_too_long_closes_with_4001() -> None:
    sock = HeldSocket()
    sock.gate.clear()
    conn = Connection(sock, "spectator", queue_size=4, send_timeout_s=0.05)
    conn.send_state(snapshot(1))
    await asyncio.wait_for(conn.run_sender(), 5)
    assert sock.closed == (4001, "too slow") and sock.sent == []
    conn.send_state(snapshot(2))  # a closed connection never queues again (memory stays bounded)
    assert conn.queued == 0


async def test_serve_stops_the_sender_when_the_reader_ends() -> None:
    sock = HeldSocket()
    conn = Connection(sock, "spectator", queue_size=4, send_timeout_s=5)

    async def reader() -> None:
        conn.send(Pong(1))
        await asyncio.sleep(0.01)

    await asyncio.wait_for(conn.serve(reader()), 5)
    assert conn.state is ConnectionState.CLOSED
    assert [m["type"] for m in sock.sent] == ["pong"]
