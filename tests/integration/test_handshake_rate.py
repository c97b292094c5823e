"""WebSocket handshakes are paced per client address and over all addresses, at the transport.

A handshake over the rate is answered HTTP 429 `rate_limited` with Retry-After before the upgrade
(no WebSocket, no app call: the cheap refusal that keeps spectator churn from stalling players).
Behind a trusted proxy the client is the one X-Forwarded-For names, as for the app's other limits.
"""

from __future__ import annotations

import asyncio
import json

from stream.settings import Settings
from tests.support.attacks import handshake, read_head
from tests.support.server import live_server


async def _status(port: int, address: str, extra: str = "") -> tuple[int, str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    try:
        writer.write(handshake("/ws/watch/no-such-game", port, extra=extra))
        return await read_head(reader)
    finally:
        writer.close()


async def _statuses(port: int, address: str, count: int, extra: str = "") -> list[int]:
    return [(await _status(port, address, extra))[0] for _ in range(count)]


async def test_an_address_over_its_burst_gets_429_and_others_do_not(settings: Settings) -> None:
    with live_server(settings, ws_joins_per_10s=1, ws_join_burst=3, ws_joins_per_s=0) as server:
        assert await _statuses(server.port, "127.0.0.11", 3) == [101, 101, 101]
        status, head, body = await _status(server.port, "127.0.0.11")
        assert status == 429, head
        assert json.loads(body)["error"]["code"] == "rate_limited"
        retry = [line for line in head.split("\r\n") if line.lower().startswith("retry-after:")]
        assert retry and int(retry[0].split(":")[1]) >= 1, head
        assert await _statuses(server.port, "127.0.0.12", 3) == [101, 101, 101]  # its own budget


async def test_many_addresses_together_meet_the_server_wide_rate(settings: Settings) -> None:
    # 4 per second over all addresses, bursting to 1: the second address in the same instant waits.
    with live_server(settings, ws_joins_per_10s=0, ws_joins_per_s=4) as server:
        answers = [await _statuses(server.port, f"127.0.0.{20 + i}", 1) for i in range(3)]
        assert answers[0] == [101] and [429] in answers[1:], answers


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(settings: Settings) -> None:
    limits = {"ws_joins_per_10s": 1, "ws_join_burst": 2, "ws_joins_per_s": 0}
    with live_server(settings, forwarded_allow_ips="127.0.0.30", **limits) as server:
        one, two = "X-Forwarded-For: 198.51.100.7\r\n", "X-Forwarded-For: 198.51.100.8\r\n"
        assert await _statuses(server.port, "127.0.0.30", 3, one) == [101, 101, 429]
        assert await _statuses(server.port, "127.0.0.30", 2, two) == [101, 101]
        # An untrusted peer cannot pick its budget by claiming to forward for someone.
        assert await _statuses(server.port, "127.0.0.31", 3, one) == [101, 101, 429]
