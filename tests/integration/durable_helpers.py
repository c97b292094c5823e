"""Helpers for the durability and cluster tests: play along the solution, read spectators."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from maze import Maze, Point, solve
from tests.integration.test_play_watch import recv, recv_type


async def play(
    player: ClientConnection, maze: Maze, state: dict[str, Any], count: int
) -> list[dict[str, Any]]:
    """`count` moves along the solution from the player's position; the states that acknowledged them."""
    path = solve(maze, Point(**state["player"]))[:count]
    acked = []
    for direction in path:
        await player.send(json.dumps({"type": "move", "direction": direction.value}))
        while True:
            message = await recv(player)
            moved = message.get("last_move", {}).get("direction")
            if message["type"] == "state" and moved == direction.value:
                acked.append(message)
                break
    return acked


async def states_until(ws: ClientConnection, version: int, wait: float = 10.0) -> list[dict[str, Any]]:
    """Every state a spectator receives until (and including) the one with `version` or newer."""
    states = []
    while True:
        message = await recv_type(ws, "state", wait)
        states.append(message)
        if message["version"] >= version:
            return states


def assert_in_order(states: list[dict[str, Any]]) -> None:
    versions = [s["version"] for s in states]
    assert versions == sorted(set(versions)), versions  # strictly increasing


async def eventually(check: Any, within_s: float = 10.0, interval: float = 0.1) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
