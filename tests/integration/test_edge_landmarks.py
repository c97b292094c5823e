"""Edge mode over the play socket: `landmarks` messages instead of JPEG frames.

The server recognises landmarks a client found with the same classifier, open-set head and
smoothing as a frame's, makes no hand tracker for them, paces them like frames, and answers every
malformed message with an error code while the socket (and the game) go on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from model.landmarks import Hand, HandTracker
from stream.settings import Settings
from tests.integration.test_play_watch import create_session, recv_type
from tests.support.server import LiveServer, live_server


def landmarks_message(hand: Hand | None, width: int = 640, height: int = 480) -> str:
    if hand is None:
        return json.dumps({"type": "landmarks", "width": width, "height": height, "hand": None})
    points = [[float(v) for v in point] for point in hand.normalized]
    body = {"points": points, "handedness": hand.handedness, "score": float(hand.score)}
    return json.dumps({"type": "landmarks", "width": hand.width, "height": hand.height, "hand": body})


@pytest.fixture(scope="module")
def photo_hands(gestures_dir: Path) -> list[tuple[Path, Hand]]:
    """The reference photos' hands, found the way /predict finds them (one still image each)."""
    import cv2

    tracker = HandTracker(static_image_mode=True)
    try:
        found = []
        for photo in sorted(gestures_dir.glob("*.jpg")):
            rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
            hand = tracker.detect(rgb)
            if hand is not None:
                found.append((photo, hand))
        return found
    finally:
        tracker.close()


async def _play(server: LiveServer) -> tuple[dict[str, Any], ClientConnection]:
    created = await create_session(server)
    ws = await connect(server.ws_url + created["play_url"])
    await recv_type(ws, "welcome")
    return created, ws


async def test_landmarks_classify_as_the_same_photo_does(settings: Settings, photo_hands) -> None:
    assert len(photo_hands) >= 8, "the reference photos should show hands"
    with live_server(settings) as server:
        _, ws = await _play(server)
        async with ws, httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            for photo, hand in photo_hands:
                await ws.send(landmarks_message(hand))
                reply = await recv_type(ws, "frame")
                served = (await http.post("/predict", content=photo.read_bytes(),
                                          headers={"content-type": "image/jpeg"})).json()
                assert reply["hand"] is True and reply["gesture"] == served["gesture"], (photo.name, served)
                # /predict's graph is configured for stills: its landmarks differ a hair from ours.
                assert math.isclose(reply["confidence"], served["confidence"], abs_tol=0.05), photo.name
            await ws.send(landmarks_message(None))
            empty = await recv_type(ws, "frame")
            assert empty["hand"] is False and empty["gesture"] is None
        metrics = (await httpx.AsyncClient().get(f"{server.http_url}/metrics")).text
        assert f"gesture_maze_landmarks_received_total {len(photo_hands) + 1}.0" in metrics
        # Every message went through the classifier's batches (one at a time here: one player, in turn).
        assert f"gesture_maze_classify_batch_size_sum {len(photo_hands) + 1}.0" in metrics


async def test_landmarks_move_the_player_and_take_no_tracker(
    settings: Settings, photo_hands, gestures_dir: Path
) -> None:
    like = next(hand for photo, hand in photo_hands if photo.stem == "like")  # "up" in counting
    # One tracker server-wide, held by a JPEG player: the edge player still plays.
    with live_server(settings, max_trackers=1) as server:
        _, camera = await _play(server)
        _, edge = await _play(server)
        async with camera, edge:
            await camera.send((gestures_dir / "palm.jpg").read_bytes())
            assert (await recv_type(camera, "frame"))["hand"] is True
            for _ in range(40):  # held, as a camera would send it: the smoother fires a move
                await edge.send(landmarks_message(like))
                reply = await recv_type(edge, "frame")
                if reply["command"] is not None:
                    break
            assert reply["command"] == "up", reply
            state = await recv_type(edge, "state")
            assert state["last_move"]["source"] == "gesture", state
            metrics = (await httpx.AsyncClient().get(f"{server.http_url}/metrics")).text
        assert "\ngesture_maze_trackers 1.0" in metrics  # the camera player's only
        assert 'reason="no_tracker"' not in metrics


BAD = {
    "twenty points": lambda m: {**m, "hand": {**m["hand"], "points": m["hand"]["points"][:20]}},
    "a point of two": lambda m: {**m, "hand": {**m["hand"], "points": [[0.5, 0.5]] * 21}},
    "text numbers": lambda m: {**m, "hand": {**m["hand"], "points": [["0.5", 0.5, 0]] * 21}},
    "booleans": lambda m: {**m, "hand": {**m["hand"], "points": [[True, 0.5, 0]] * 21}},
    "far outside": lambda m: {**m, "hand": {**m["hand"], "points": [[9.0, 0.5, 0]] * 21}},
    "deep z": lambda m: {**m, "hand": {**m["hand"], "points": [[0.5, 0.5, 50]] * 21}},
    "handedness": lambda m: {**m, "hand": {**m["hand"], "handedness": "left"}},
    "score": lambda m: {**m, "hand": {**m["hand"], "score": 1.5}},
    "extra hand field": lambda m: {**m, "hand": {**m["hand"], "image": "x"}},
    "no size": lambda m: {k: v for k, v in m.items() if k != "width"},
    "tiny frame": lambda m: {**m, "width": 3},
    "float size": lambda m: {**m, "height": 480.5},
    "hand as list": lambda m: {**m, "hand": []},
}


async def test_bad_landmarks_get_an_error_and_the_game_goes_on(settings: Settings, photo_hands) -> None:
    good = json.loads(landmarks_message(photo_hands[0][1]))
    with live_server(settings) as server:
        _, ws = await _play(server)
        async with ws:
            for name, spoil in BAD.items():
                await ws.send(json.dumps(spoil(good)))
                error = await recv_type(ws, "error")
                assert error["code"] == "bad_field", (name, error)
            not_finite = json.dumps(good).replace(str(good["hand"]["points"][0][0]), "NaN", 1)
            await ws.send(not_finite)
            assert (await recv_type(ws, "error"))["code"] == "bad_field"
            await ws.send(json.dumps(good) + " " * 5000)  # over GM_MAX_TEXT_BYTES
            assert (await recv_type(ws, "error"))["code"] == "message_too_large"
            await ws.send(json.dumps(good))
            assert (await recv_type(ws, "frame"))["hand"] is True  # still served


async def test_landmarks_are_paced_like_frames(settings: Settings, photo_hands) -> None:
    message = landmarks_message(photo_hands[0][1])
    with live_server(settings, max_fps=5.0) as server:
        _, ws = await _play(server)
        async with ws:
            for _ in range(30):
                await ws.send(message)
            error = await recv_type(ws, "error")
            assert error["code"] == "rate_limited", error
