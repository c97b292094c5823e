"""Attacks on the HTTP bodies and on `POST /predict` (issue #26 items 3 and 5), for
tests/integration/test_abuse_web.py; each `async def (target) -> dict` runs in its own process
(tests.support.abuse), from the attacker's own loopback addresses, and returns what it was answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx

from tests.support.abuse import HONEST, Target, http_client
from tests.support.paths import GESTURES_DIR

ADDRESSES = ("127.0.0.3", "127.0.0.6", "127.0.0.7", "127.0.0.8")
BODY_BYTES = 527 * 1024  # the bodies: 527 KiB


def warm_up() -> None:
    multipart_bodies()


def _photo(name: str = "palm") -> bytes:
    return (GESTURES_DIR / f"{name}.jpg").read_bytes()


def multipart_bodies() -> list[tuple[str, bytes]]:
    """(content type, body) pairs, each ~527 KiB: every shape a naive multipart reader pays for."""
    tiny = b"--b\r\n\r\n\r\n"  # a part with no headers and no content: 9 bytes
    count = BODY_BYTES // len(tiny)
    file_part = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + _photo() + b"\r\n"
    plain = "multipart/form-data; boundary=b"
    return [
        (plain, tiny * count + b"--b--\r\n"),  # ~60,000 empty parts
        (plain, file_part + tiny * (count - 5000) + b"--b--\r\n"),  # the image first, then tiny parts
        (plain, tiny * count),  # never closed
        (plain, b"--b\r\nX: " + b"h" * (BODY_BYTES - 20) + b"\r\n--b--\r\n"),  # one endless part head
        ('multipart/form-data; boundary="' + "q" * 60 + '"', (b"--" + b"q" * 60 + b"\r\n\r\n\r\n") * 7000),
    ]


def costly_json() -> bytes:
    """A 4 KiB create body that is costly to decode (floats) and then refused (not an object)."""
    return ("[" + ",".join(["1e308"] * 680) + "]").encode()[:4096].rsplit(b",", 1)[0] + b"]"


def _code(response: httpx.Response) -> str:
    return response.json().get("error", {}).get("code", "ok")


async def body_parsers(target: Target) -> dict[str, Any]:
    """Costly multipart bodies to POST /predict and costly JSON to POST /api/sessions, from 4
    addresses, each keeping 2 uploads in flight (within its /predict share, so they are parsed)."""
    bodies = multipart_bodies()
    json_body = costly_json()
    answers: Counter[str] = Counter()
    sent = Counter[str]()
    deadline = time.monotonic() + target.duration_s

    async def uploads(address: str, offset: int) -> None:
        async with http_client(address, base_url=target.http_url, timeout=30.0) as http:
            i = offset
            while time.monotonic() < deadline:
                content_type, body = bodies[i % len(bodies)]
                i += 1
                response = await http.post("/predict", content=body, headers={"content-type": content_type})
                answers[f"{response.status_code} {_code(response)}"] += 1
                sent["predict"] += 1

    async def creates(address: str) -> None:
        async with http_client(address, base_url=target.http_url, timeout=30.0) as http:
            while time.monotonic() < deadline:
                response = await http.post(
                    "/api/sessions", content=json_body, headers={"content-type": "application/json"}
                )
                answers[f"create {response.status_code} {_code(response)}"] += 1
                sent["create"] += 1

    await asyncio.gather(
        *(uploads(address, k) for address in ADDRESSES for k in range(2)),
        *(creates(address) for address in ADDRESSES),
    )
    return {"answers": dict(answers), "sent": dict(sent)}


async def predict_hog(target: Target) -> dict[str, Any]:
    """One address keeps 8 POST /predict in flight; an honest client on another address sends one
    request at a time meanwhile. Returns both sides' answers."""
    photo, honest_photo = _photo("palm"), _photo("like")
    attacker: Counter[str] = Counter()
    honest: list[tuple[int, float]] = []
    deadline = time.monotonic() + target.duration_s

    async def hog(http: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            response = await http.post("/predict", content=photo, headers={"content-type": "image/jpeg"})
            attacker[str(response.status_code)] += 1  # and straight back in: Retry-After is ignored

    async def honest_client() -> None:
        async with http_client(HONEST, base_url=target.http_url, timeout=30.0) as http:
            await asyncio.sleep(0.3)  # the hog is at full strength first
            while time.monotonic() < deadline:
                started = time.monotonic()
                response = await http.post(
                    "/predict", content=honest_photo, headers={"content-type": "image/jpeg"}
                )
                honest.append((response.status_code, time.monotonic() - started))
                if response.status_code == 200:
                    assert response.json()["gesture"] == "like", response.text
                await asyncio.sleep(0.05)

    limits = httpx.Limits(max_connections=8)
    async with http_client(target.address, base_url=target.http_url, timeout=30.0, limits=limits) as http:
        await asyncio.gather(*(hog(http) for _ in range(8)), honest_client())
    return {"attacker": dict(attacker), "honest": honest}
