"""POST /predict on a real server: every labelled photo, blank frames, and bad input."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import numpy as np
import pytest

from stream.settings import Settings
from tests.integration.durable_helpers import eventually
from tests.support.frames import blank_jpeg, corrupt_jpeg, encode_jpeg, truncated_jpeg
from tests.support.server import live_server

GESTURES = ("dislike", "fist", "four", "like", "one", "palm", "peace", "stop", "three")
COUNTING = {"one": "up", "peace": "right", "three": "down", "four": "left", "like": "up", "dislike": "down"}


@pytest.fixture(scope="module")
def live(gestures_dir):
    with (
        live_server(Settings.from_env({}), max_frame_bytes=200_000) as running,
        httpx.Client(base_url=running.http_url, timeout=30) as client,
    ):
        yield running, client


def metric(client: httpx.Client, line_prefix: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("gesture", GESTURES)
def test_every_labelled_photo_multipart(live, gestures_dir, gesture):
    _, client = live
    photo = (gestures_dir / f"{gesture}.jpg").read_bytes()
    response = client.post("/predict", files={"file": (f"{gesture}.jpg", photo, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"gesture", "confidence", "direction", "hand", "landmarks", "processing_time"}
    assert body["gesture"] == gesture
    assert body["hand"] is True
    assert body["direction"] == COUNTING.get(gesture)
    assert 0 < body["confidence"] <= 1
    assert len(body["landmarks"]) == 21 and all(
        0 <= x <= 1.05 and 0 <= y <= 1.05 for x, y in body["landmarks"]
    )
    assert 0 < body["processing_time"] < 30


@pytest.mark.parametrize("gesture", ["like", "one", "dislike"])
def test_raw_jpeg_body(live, gestures_dir, gesture):
    _, client = live
    photo = (gestures_dir / f"{gesture}.jpg").read_bytes()
    body = client.post("/predict", content=photo, headers={"content-type": "image/jpeg"}).json()
    assert (body["gesture"], body["direction"]) == (gesture, COUNTING[gesture])


def test_pointing_scheme_query(live, gestures_dir):
    _, client = live
    photo = (gestures_dir / "one.jpg").read_bytes()
    body = client.post(
        "/predict?scheme=pointing", content=photo, headers={"content-type": "image/jpeg"}
    ).json()
    assert (body["gesture"], body["direction"]) == ("one", "up")
    fist = (gestures_dir / "fist.jpg").read_bytes()
    body = client.post(
        "/predict?scheme=pointing", content=fist, headers={"content-type": "image/jpeg"}
    ).json()
    assert (body["gesture"], body["direction"]) == ("fist", None)


def test_blank_frame_has_no_hand(live):
    _, client = live
    response = client.post("/predict", files={"file": ("blank.jpg", blank_jpeg(), "image/jpeg")})
    assert response.status_code == 200
    body = response.json()
    assert body["hand"] is False
    assert body["gesture"] is None and body["direction"] is None and body["landmarks"] is None
    assert body["confidence"] == 0.0


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_bad_input(live, gestures_dir):
    _, client = live
    good = (gestures_dir / "like.jpg").read_bytes()
    jpeg = {"content-type": "image/jpeg"}
    before = metric(client, 'gesture_maze_frames_invalid_total{reason="corrupt_jpeg"}')
    _error(client.post("/predict", content=b"", headers=jpeg), 400, "empty_frame")
    _error(client.post("/predict", content=b"not an image at all", headers=jpeg), 400, "not_jpeg")
    _error(client.post("/predict", content=corrupt_jpeg(good), headers=jpeg), 400, "corrupt_jpeg")
    _error(client.post("/predict", content=truncated_jpeg(good), headers=jpeg), 400, "corrupt_jpeg")
    wide = encode_jpeg(np.zeros((100, 2000, 3), np.uint8))
    _error(client.post("/predict", content=wide, headers=jpeg), 400, "frame_dimensions")
    _error(client.post("/predict", files={"other": ("x.jpg", good, "image/jpeg")}), 400, "empty_frame")
    _error(client.post("/predict?scheme=nope", content=good, headers=jpeg), 400, "bad_request")
    assert metric(client, 'gesture_maze_frames_invalid_total{reason="corrupt_jpeg"}') == before + 2
    # The server is still fine afterwards.
    assert client.post("/predict", content=good, headers=jpeg).json()["gesture"] == "like"


def test_too_large_is_refused_without_reading_it_all(live):
    _, client = live
    big = b"\xff\xd8\xff" + bytes(300_000)
    _error(
        client.post("/predict", content=big, headers={"content-type": "image/jpeg"}), 413, "frame_too_large"
    )

    def chunks():  # no content-length: the cap applies while streaming
        yield b"\xff\xd8\xff"
        for _ in range(100):
            yield bytes(10_000)

    _error(
        client.post("/predict", content=chunks(), headers={"content-type": "image/jpeg"}),
        413,
        "frame_too_large",
    )


def test_predictions_are_measured(live, gestures_dir):
    _, client = live
    before = metric(client, 'gesture_maze_gestures_total{gesture="peace"}')
    stage_before = metric(client, 'gesture_maze_stage_seconds_count{stage="landmarks"}')
    client.post(
        "/predict", content=(gestures_dir / "peace.jpg").read_bytes(), headers={"content-type": "image/jpeg"}
    )
    assert metric(client, 'gesture_maze_gestures_total{gesture="peace"}') == before + 1
    assert metric(client, 'gesture_maze_stage_seconds_count{stage="landmarks"}') == stage_before + 1


async def test_a_flood_is_shed_not_queued(gestures_dir):
    # Two workers: at most one prediction at a time may be in the pool; the rest get 503 at once.
    photo = (gestures_dir / "palm.jpg").read_bytes()
    with live_server(Settings.from_env({}), workers=2) as running:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as http:

            async def one() -> httpx.Response:
                return await http.post("/predict", content=photo, headers={"content-type": "image/jpeg"})

            responses = await asyncio.gather(*(one() for _ in range(16)))
            # One address: beyond its share (GM_PREDICT_PER_IP) it is told at once, before its body.
            refused = [r for r in responses if r.status_code == 429]
            assert any(r.status_code == 200 and r.json()["gesture"] == "palm" for r in responses)
            assert refused and all(r.json()["error"]["code"] == "too_many_in_flight" for r in refused)
            assert all(r.headers["retry-after"] == "1" for r in refused)
            assert {r.status_code for r in responses} <= {200, 429, 503}
            # Once the flood is over the endpoint serves again.
            assert (await one()).status_code == 200


# --- admission before the body, bounded parsing ---------------------------------------------------
def _head(port: int, length: int, content_type: str = "image/jpeg") -> bytes:
    return (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def _open(port: int, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def _answer(reader: asyncio.StreamReader, wait_s: float = 5.0) -> tuple[int, dict[str, str], dict]:
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait_s)).decode("latin-1")
    lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), wait_s)
    return int(lines[0].split(" ", 2)[1]), headers, json.loads(body)


async def test_requests_are_admitted_before_their_body_is_read(gestures_dir):
    photo = (gestures_dir / "palm.jpg").read_bytes()
    settings = Settings.from_env({}).replace(predict_per_ip=1, predict_queue=2, body_timeout_s=1.5)
    with live_server(settings, workers=2) as running:
        port = running.port
        # 127.0.0.3 starts an upload and trickles it: it holds its admission (its one share).
        _, slow = await _open(port, "127.0.0.3")
        slow.write(_head(port, len(photo)) + photo[:100])
        await slow.drain()
        await asyncio.sleep(0.2)
        # Its second request is refused from the head alone: no body byte was ever sent.
        reader, writer = await _open(port, "127.0.0.3")
        writer.write(_head(port, len(photo)))
        await writer.drain()
        status, headers, body = await _answer(reader)
        assert (status, body["error"]["code"], headers["retry-after"]) == (429, "too_many_in_flight", "1")
        writer.close()
        # 127.0.0.6 takes the last place (GM_PREDICT_QUEUE=2), also trickling; 127.0.0.7 finds it full.
        _, slow2 = await _open(port, "127.0.0.6")
        slow2.write(_head(port, len(photo)) + photo[:100])
        await slow2.drain()
        await asyncio.sleep(0.2)
        reader, writer = await _open(port, "127.0.0.7")
        writer.write(_head(port, len(photo)))
        await writer.drain()
        status, headers, body = await _answer(reader)
        assert (status, body["error"]["code"], headers["retry-after"]) == (503, "server_busy", "1")
        writer.close()
        # A trickled body is cut off at GM_BODY_TIMEOUT_S (408), which gives the places back.
        async with httpx.AsyncClient(base_url=running.http_url, timeout=30) as http:
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                response = await http.post("/predict", content=photo, headers={"content-type": "image/jpeg"})
                if response.status_code == 200 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert response.status_code == 200, response.text
        for trickled in (slow, slow2):
            trickled.close()
        # Every place comes back once the server has seen the trickled uploads end (their 408 or the
        # close): a condition, waited for, as the server notices them on its own schedule.
        gate = running.app.state.services.predict_gate

        async def all_places_back() -> bool:
            return gate.admitted_count == 0 and not gate._per_key

        await eventually(all_places_back, within_s=10.0, interval=0.05)


def test_body_timeout_and_too_many_parts(gestures_dir):
    photo = (gestures_dir / "palm.jpg").read_bytes()
    with live_server(Settings.from_env({}), body_timeout_s=1.0) as running, httpx.Client(
        base_url=running.http_url, timeout=30
    ) as client:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(_head(running.port, len(photo)) + photo[:10])
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 408") and b'"body_timeout"' in data, data[:300]
        # Tiny parts, as many as fit (the attack body): refused, clearly, whatever comes after.
        boundary = "b"
        parts = b"".join(b"--b\r\n\r\n\r\n" for _ in range(5)) + b"--b--\r\n"
        many = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + photo + b"\r\n" + parts
        content_type = {"content-type": f"multipart/form-data; boundary={boundary}"}
        _error(client.post("/predict", content=many, headers=content_type), 400, "too_many_parts")
        flood = b"--b\r\n\r\n\r\n" * 60_000 + b"--b--\r\n"  # 527 KiB
        _error(client.post("/predict", content=flood, headers=content_type), 400, "too_many_parts")
        # A few extra fields are fine.
        ok = client.post("/predict", files={"file": ("p.jpg", photo, "image/jpeg")}, data={"note": "x"})
        assert ok.status_code == 200 and ok.json()["gesture"] == "palm", ok.text
