"""Attacks for tests/integration/test_abuse.py, each `async def (target) -> dict` run in its own
process by tests.support.abuse. They speak raw HTTP and hand-built WebSocket frames (client frames
are masked) over asyncio streams, from the attacker's own loopback address, and return what the
server answered so the test can check it was the documented refusal.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import cv2
import numpy as np
from websockets.exceptions import ConnectionClosed

from tests.support.abuse import NEWCOMER, Target, http_client
from tests.support.paths import GESTURES_DIR

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9


def warm_up() -> None:
    """Run once in the attack process before any measurement: imports are done, caches filled."""
    many_scan_jpeg()


# --- raw HTTP / WebSocket ----------------------------------------------------------------------
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_raw(target: Target, address: str | None = None) -> Stream:
    return await asyncio.open_connection("127.0.0.1", target.port, local_addr=(address or target.address, 0))


def ws_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    size = len(payload)
    if size < 126:
        head.append(0x80 | size)
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    if not payload:
        return bytes(head) + mask
    masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), size)).tobytes()
    return bytes(head) + mask + masked


def handshake(path: str, port: int, *, host: str | None = None, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


async def read_head(reader: asyncio.StreamReader, wait_s: float = 5.0) -> tuple[int, str, bytes]:
    """(status, head text, body) of an HTTP response; the body is read when Content-Length says so."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait_s)
    head = raw.decode("latin-1")
    status = int(head.split(" ", 2)[1])
    body = b""
    for line in head.split("\r\n"):
        if line.lower().startswith("content-length:"):
            body = await asyncio.wait_for(reader.readexactly(int(line.split(":", 1)[1])), wait_s)
    return status, head, body


async def ws_open(target: Target, path: str, *, extra: str = "", address: str | None = None) -> tuple[
    asyncio.StreamReader, asyncio.StreamWriter, str
]:
    reader, writer = await open_raw(target, address)
    writer.write(handshake(path, target.port, extra=extra))
    status, head, _ = await read_head(reader)
    assert status == 101, head
    return reader, writer, head


async def read_close_code(reader: asyncio.StreamReader, wait_s: float = 10.0) -> int | None:
    """Read server frames until a close frame (its code) or EOF (None)."""
    try:
        async with asyncio.timeout(wait_s):
            while True:
                first, second = await reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", await reader.readexactly(8))[0]
                payload = await reader.readexactly(size)
                if first & 0x0F == OP_CLOSE:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        return None


async def send_until_closed(
    writer: asyncio.StreamWriter, chunk: bytes, deadline: float, closing: asyncio.Task[Any] | None = None
) -> int:
    """Write `chunk` again and again until the server closes (or `closing` is done) or the deadline;
    bytes sent."""
    sent = 0
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        while time.monotonic() < deadline and not writer.is_closing():
            if closing is not None and closing.done():
                break
            writer.write(chunk)
            async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
                await writer.drain()
            sent += len(chunk)
    return sent


def close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


@contextlib.asynccontextmanager
async def joined_session(target: Target) -> AsyncIterator[dict[str, Any]]:
    """A session of the attacker's own, kept alive (joined) by a quiet player for the attack."""
    session = await new_session(target)
    from websockets.asyncio.client import connect

    async with connect(target.ws_url + session["play_url"], local_addr=(target.address, 0)) as ws:

        async def drain() -> None:  # every spectator coming and going is a `state`: read them all
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass

        draining = asyncio.create_task(drain())
        try:
            yield session
        finally:
            draining.cancel()


async def new_session(target: Target, address: str | None = None) -> dict[str, Any]:
    async with http_client(address or target.address, base_url=target.http_url) as http:
        response = await http.post("/api/sessions", json={})
    assert response.status_code == 201, response.text
    return response.json()


def error_code(body: bytes) -> str:
    return json.loads(body)["error"]["code"]


async def repeat(target: Target, once: Any, pause_s: float = 0.05) -> list[Any]:
    """Run `once()` again and again for the attack's duration; its results."""
    results = []
    deadline = time.monotonic() + target.duration_s
    while time.monotonic() < deadline:
        results.append(await once())
        await asyncio.sleep(pause_s)
    return results


# --- 1. transport ------------------------------------------------------------------------------
async def deflate_bomb(target: Target) -> dict[str, Any]:
    """Offer permessage-deflate, then send compressed 1.5 MiB messages anyway (10 sockets)."""
    async with joined_session(target) as session:
        return await _deflate_bomb(target, session)


async def _deflate_bomb(target: Target, session: dict[str, Any]) -> dict[str, Any]:
    bomb = zlib.compressobj(wbits=-15)
    payload = bomb.compress(b"\0" * (3 * 2**19)) + bomb.flush(zlib.Z_SYNC_FLUSH)[:-4]
    extensions, codes = [], []

    async def one() -> None:
        reader, writer, head = await ws_open(
            target, session["watch_url"], extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"
        )
        extensions.append("sec-websocket-extensions" in head.lower())
        writer.write(ws_frame(OP_BINARY, payload, rsv1=True))
        codes.append(await read_close_code(reader))
        close(writer)

    async def wave() -> None:
        await asyncio.gather(*(one() for _ in range(10)))
        await asyncio.sleep(0.1)

    await repeat(target, wave)
    return {"negotiated": extensions, "codes": codes, "compressed_bytes": len(payload)}


async def _fragment_flood(target: Target, fragment: bytes, total: int) -> dict[str, Any]:
    async with joined_session(target) as session:
        return await _fragments(target, session, fragment, total)


async def _fragments(target: Target, session: dict[str, Any], fragment: bytes, total: int) -> dict[str, Any]:
    codes, sent = [], []

    async def once() -> None:
        reader, writer, _ = await ws_open(target, session["watch_url"])
        closing = asyncio.create_task(read_close_code(reader))
        writer.write(ws_frame(OP_BINARY, fragment, fin=False))
        burst = ws_frame(OP_CONT, fragment, fin=False) * 20_000
        deadline = time.monotonic() + min(2.0, target.duration_s)
        frame_size = len(ws_frame(OP_CONT, fragment))
        sent.append(await send_until_closed(writer, burst, deadline, closing) // frame_size)
        codes.append(await closing)
        close(writer)
        await asyncio.sleep(0.1)

    await repeat(target, once)
    return {"codes": codes, "frames_sent": sent, "message_bytes": total}


async def empty_continuation_flood(target: Target) -> dict[str, Any]:
    """Millions of zero-length continuation frames: the message never grows."""
    return await _fragment_flood(target, b"", 0)


async def one_byte_fragments(target: Target) -> dict[str, Any]:
    """A 1.4 MB message in 1-byte fragments."""
    return await _fragment_flood(target, b"x", 1_400_000)


async def unread_pings(target: Target) -> dict[str, Any]:
    """Pings as fast as possible while never reading the pongs (a tiny receive window)."""
    async with joined_session(target) as session:
        return await _unread_pings(target, session)


async def _unread_pings(target: Target, session: dict[str, Any]) -> dict[str, Any]:
    closed, pings = [], []
    ping = ws_frame(OP_PING, b"p" * 125)

    async def once() -> None:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.bind((target.address, 0))
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", target.port))
        reader, writer = await asyncio.open_connection(sock=raw)
        writer.write(handshake(session["watch_url"], target.port))
        await read_head(reader)
        started = time.monotonic()
        deadline = started + min(2.0, target.duration_s)
        pings.append(await send_until_closed(writer, ping * 1000, deadline) // len(ping))
        # Never reading, the client learns of the close only when its writes fail.
        closed.append(time.monotonic() < deadline)
        close(writer)
        await asyncio.sleep(0.1)

    await repeat(target, once)
    return {"closed": closed, "pings_sent": pings}


async def _oversize_head(target: Target, start: bytes, filler: bytes) -> tuple[int, str]:
    reader, writer = await open_raw(target)
    writer.write(start)
    response = asyncio.create_task(read_head(reader, wait_s=10.0))
    deadline = time.monotonic() + 2.0
    with contextlib.suppress(ConnectionError, OSError):
        while time.monotonic() < deadline and not response.done():
            writer.write(filler)
            await writer.drain()
    status, _, body = await response
    close(writer)
    return status, error_code(body)


async def oversize_heads(target: Target) -> dict[str, Any]:
    """A request line, a header value (both streamed towards 200 MiB) and an 9 KiB handshake line."""
    filler = b"a" * 65536
    header_start = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\nX-Big: ".encode()

    async def handshake_line() -> tuple[int, str]:
        reader, writer = await open_raw(target)
        writer.write(handshake("/ws/watch/x", target.port, extra=f"X-Long: {'b' * 9000}\r\n"))
        status, _, body = await read_head(reader)
        close(writer)
        return status, error_code(body)

    async def once() -> list[tuple[int, str]]:
        return list(
            await asyncio.gather(
                _oversize_head(target, b"GET /", filler),
                _oversize_head(target, header_start, filler),
                handshake_line(),
            )
        )

    return {"answers": [answer for answers in await repeat(target, once) for answer in answers]}


async def slowloris(target: Target) -> dict[str, Any]:
    """1,100 sockets (server at a 1,024 descriptor limit) that never finish their request head, from
    4 addresses; a newcomer arrives meanwhile.

    Each socket's answer is read as it arrives, and the socket's times are returned: `sockets` is a
    list of (address, connect started, answer arrived, status), in seconds on this process's
    monotonic clock (the same clock as the server's: one machine)."""
    opened: list[asyncio.StreamWriter] = []
    sockets: list[tuple[str, float, float, int | None]] = []
    addresses = (target.address, "127.0.0.6", "127.0.0.7", "127.0.0.8")

    async def newcomer_arrives() -> tuple[int, float]:
        arrived = time.monotonic()
        async with http_client(NEWCOMER, base_url=target.http_url, timeout=5.0) as http:
            response = await http.post("/api/sessions", json={})
        return response.status_code, time.monotonic() - arrived

    async def answer(address: str, began: float, reader: asyncio.StreamReader) -> None:
        try:
            status: int | None = (await read_head(reader, wait_s=3600))[0]  # bounded below
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, asyncio.CancelledError):
            status = None  # reset, or still unanswered when the attack stops waiting
        sockets.append((address, began, time.monotonic(), status))

    answers: list[asyncio.Task[None]] = []
    newcomer: asyncio.Task[tuple[int, float]] | None = None
    for batch in range(22):  # 1,100 sockets in ~2.2 s from 4 addresses
        if batch == 16:  # ~800 sockets open or being refused
            newcomer = asyncio.create_task(newcomer_arrives())
        address = addresses[batch % len(addresses)]
        for _ in range(50):
            began = time.monotonic()
            with contextlib.suppress(OSError):
                reader, writer = await open_raw(target, address)
                writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\nX-Slow: ".encode())
                opened.append(writer)
                answers.append(asyncio.create_task(answer(address, began, reader)))
        await asyncio.sleep(0.1)
    started = time.monotonic()
    assert newcomer is not None
    newcomer_status, newcomer_s = await newcomer

    async def trickle() -> None:  # one byte now and then: never a complete head
        while time.monotonic() - started < target.duration_s:
            for writer in opened:
                with contextlib.suppress(Exception):
                    writer.write(b"x")
            await asyncio.sleep(0.5)

    trickling = asyncio.create_task(trickle())
    _, unanswered = await asyncio.wait(answers, timeout=target.duration_s + 5)
    for task in unanswered:
        task.cancel()
    await asyncio.gather(*answers)
    held_s = time.monotonic() - started
    trickling.cancel()
    for writer in opened:
        close(writer)
    return {
        "statuses": dict(Counter(str(status) for *_, status in sockets)),
        "sockets": sockets,
        "newcomer": newcomer_status,
        "newcomer_s": newcomer_s,
        "held_s": held_s,
    }


async def oversize_bodies(target: Target) -> dict[str, Any]:
    """300 MiB bodies announced (3 at once), and a chunked body with no length at all."""

    async def declared(path: str) -> tuple[int, str]:
        reader, writer = await open_raw(target)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {300 * 2**20}\r\n\r\n".encode()
        )
        response = asyncio.create_task(read_head(reader))
        with contextlib.suppress(ConnectionError, OSError):
            for _ in range(64):  # up to 4 MiB: the answer must not wait for the body
                if response.done():
                    break
                writer.write(b"\0" * 65536)
                await writer.drain()
        status, _, body = await response
        close(writer)
        return status, error_code(body)

    async def chunked() -> tuple[int, str]:
        reader, writer = await open_raw(target)
        writer.write(
            f"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        response = asyncio.create_task(read_head(reader))
        with contextlib.suppress(ConnectionError, OSError):
            for _ in range(256):
                if response.done():
                    break
                writer.write(b"10000\r\n" + b"{" * 65536 + b"\r\n")
                await writer.drain()
        status, _, body = await response
        close(writer)
        return status, error_code(body)

    async def once() -> list[tuple[int, str]]:
        return list(
            await asyncio.gather(
                declared("/api/sessions"), declared("/api/sessions"), declared("/predict"), chunked()
            )
        )

    return {"answers": [a for answers in await repeat(target, once) for a in answers]}


# --- 2. app --------------------------------------------------------------------------------------
def _photo() -> np.ndarray:
    return cv2.imread(str(GESTURES_DIR / "palm.jpg"), cv2.IMREAD_COLOR)


def progressive_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", _photo(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def many_scan_jpeg(scans: int = 12) -> bytes:
    """A baseline JPEG whose scan is repeated: valid markers, far more scans than any webcam writes."""
    ok, buf = cv2.imencode(".jpg", _photo())
    assert ok
    data = buf.tobytes()
    sos = data.index(b"\xff\xda")
    scan = data[sos:-2]
    return data[:sos] + scan * scans + b"\xff\xd9"


def thin_jpeg(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


async def _stream_frames(target: Target, frames: list[bytes], sessions: int = 3) -> Counter[str]:
    codes: Counter[str] = Counter()
    from websockets.asyncio.client import connect

    async def player(session: dict[str, Any]) -> None:
        url = target.ws_url + session["play_url"]
        async with connect(url, local_addr=(target.address, 0), max_size=None, compression=None) as ws:
            await ws.recv()  # welcome

            async def read() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] in ("error", "frame"):
                            codes[message.get("code", "frame")] += 1

            reader = asyncio.create_task(read())
            deadline = time.monotonic() + target.duration_s
            i = 0
            while time.monotonic() < deadline:
                await ws.send(frames[i % len(frames)])
                i += 1
                await asyncio.sleep(1 / 30)
            await asyncio.sleep(0.5)
            reader.cancel()

    sessions_made = [await new_session(target) for _ in range(sessions)]
    await asyncio.gather(*(player(s) for s in sessions_made))
    return codes


async def costly_jpegs(target: Target) -> dict[str, Any]:
    """Progressive and many-scan JPEGs as frames from 3 sessions at 30 fps, and to POST /predict."""
    frames = [progressive_jpeg(), many_scan_jpeg()]
    codes = await _stream_frames(target, frames)
    async with http_client(target.address, base_url=target.http_url, timeout=10.0) as http:
        predict = []
        for frame in frames:
            response = await http.post("/predict", content=frame, headers={"content-type": "image/jpeg"})
            predict.append((response.status_code, response.json()["error"]["code"]))
    return {"codes": dict(codes), "predict": predict}


async def thin_jpegs(target: Target) -> dict[str, Any]:
    """1x1920 and 1920x1 frames on the play socket and to POST /predict; 16x1920 still works."""
    thin = [thin_jpeg(1, 1920), thin_jpeg(1920, 1)]
    codes = await _stream_frames(target, thin, sessions=1)
    async with http_client(target.address, base_url=target.http_url, timeout=20.0) as http:
        answers = []
        for data in [*thin, thin_jpeg(16, 1920), thin_jpeg(1920, 16)]:
            response = await http.post("/predict", content=data, headers={"content-type": "image/jpeg"})
            answers.append((response.status_code, response.headers["content-type"], response.json()))
    return {"codes": dict(codes), "predict": answers}


async def session_hoarding(target: Target) -> dict[str, Any]:
    """4 addresses create sessions as fast as they are allowed and never join; a newcomer arrives."""
    addresses = [target.address, "127.0.0.6", "127.0.0.7", "127.0.0.8"]
    statuses: Counter[str] = Counter()
    created: Counter[str] = Counter()

    async def hoard(address: str) -> None:
        async with http_client(address, base_url=target.http_url) as http:
            started = time.monotonic()
            refused = False
            # For 1.5 s (shorter than the unjoined expiry of the test server), and in any case until
            # this address has met its cap once: on a busy machine the creations are slower, and a
            # fixed window may end before the cap is reached at all.
            while time.monotonic() - started < 1.5 or (not refused and time.monotonic() - started < 30):
                response = await http.post("/api/sessions", json={})
                code = response.json().get("error", {}).get("code", "")
                statuses[f"{response.status_code} {code}".strip()] += 1
                created[address] += response.status_code == 201
                refused = refused or code == "too_many_sessions"
                await asyncio.sleep(0.05)  # 20 requests/s per address, ignoring every Retry-After

    await asyncio.gather(*(hoard(a) for a in addresses))
    async with http_client(NEWCOMER, base_url=target.http_url) as http:
        newcomer = await http.post("/api/sessions", json={})
        held = (await http.get("/health")).json()["sessions"]
        await asyncio.sleep(target.duration_s - 1.5)
        left = (await http.get("/health")).json()["sessions"]
    return {
        "statuses": dict(statuses),
        "created": dict(created),
        "newcomer": newcomer.status_code,
        "held": held,
        "left": left,
    }


async def rebinding_host(target: Target) -> dict[str, Any]:
    """DNS rebinding: Host `evil.example` with a matching Origin, over HTTP and WebSocket."""
    session = await new_session(target)
    evil = {"host": "evil.example", "origin": "http://evil.example"}

    async def once() -> list[tuple[int, str]]:
        async with http_client(target.address, base_url=target.http_url) as http:
            answers = [
                await http.get("/health", headers=evil),
                await http.post("/api/sessions", json={}, headers=evil),
            ]
        out = [(r.status_code, r.json()["error"]["code"]) for r in answers]
        reader, writer = await open_raw(target)
        writer.write(
            handshake(session["play_url"], target.port, host="evil.example", extra="Origin: http://evil.example\r\n")
        )
        status, _, body = await read_head(reader)
        close(writer)
        out.append((status, error_code(body)))
        await asyncio.sleep(0.05)
        return out

    return {"answers": [a for answers in await repeat(target, once) for a in answers]}


async def invalid_utf8(target: Target) -> dict[str, Any]:
    """Text messages that are not UTF-8, 100 per connection, on player and spectator sockets."""
    codes = []

    session = await new_session(target)

    async def once() -> None:
        for path in (session["play_url"], session["watch_url"]):
            reader, writer, _ = await ws_open(target, path)
            with contextlib.suppress(ConnectionError):
                writer.write(ws_frame(OP_TEXT, b"\xff\xfe{\"type\":\"ping\"}") * 100)
                await writer.drain()
            codes.append(await read_close_code(reader))
            close(writer)
        await asyncio.sleep(0.2)

    await repeat(target, once)
    return {"codes": codes}


async def plain_text_errors(target: Target) -> dict[str, Any]:
    """Requests that used to get plain-text answers: unknown paths, wrong methods, garbage."""

    async def once() -> list[tuple[int, str]]:
        async with http_client(target.address, base_url=target.http_url) as http:
            answers = [
                await http.get("/no/such/page"),
                await http.delete("/api/sessions"),
                await http.put("/health"),
            ]
        out = [(r.status_code, f"{r.headers['content-type']} {r.json()['error']['code']}") for r in answers]
        reader, writer = await open_raw(target)
        writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        status, _, body = await read_head(reader)
        close(writer)
        out.append((status, error_code(body)))
        await asyncio.sleep(0.05)
        return out

    return {"answers": [a for answers in await repeat(target, once) for a in answers]}


# --- for tests/integration/test_hardening.py ---------------------------------------------------
def predict_flood(http_url: str, photo: bytes, seconds: float, uploaders: int) -> list[int]:
    """`uploaders` concurrent clients POST `photo` to /predict for `seconds`; every status answered.
    Run in its own process, so the flood's client-side work never delays the measuring client."""

    async def flood() -> list[int]:
        statuses: list[int] = []
        stop_at = time.monotonic() + seconds

        async def uploader(http: Any) -> None:
            while time.monotonic() < stop_at:
                response = await http.post("/predict", content=photo, headers={"content-type": "image/jpeg"})
                statuses.append(response.status_code)
                if response.status_code != 200:
                    assert response.status_code in (429, 503), response.text
                    assert response.json()["error"]["code"]
                    await asyncio.sleep(0.05)

        import httpx

        limits = httpx.Limits(max_connections=uploaders)
        async with httpx.AsyncClient(base_url=http_url, limits=limits, timeout=60) as http:
            await asyncio.gather(*(uploader(http) for _ in range(uploaders)))
        return statuses

    return asyncio.run(flood())
