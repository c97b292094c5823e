"""POST /predict on a real server: every labelled photo, blank frames, and bad input."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from stream.settings import Settings
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
            busy = [r for r in responses if r.status_code == 503]
            assert any(r.status_code == 200 and r.json()["gesture"] == "palm" for r in responses)
            assert busy and all(r.json()["error"]["code"] == "server_busy" for r in busy)
            assert all(r.headers["retry-after"] == "1" for r in busy)
            assert {r.status_code for r in responses} <= {200, 503}
            # Once the flood is over the endpoint serves again.
            assert (await one()).status_code == 200
