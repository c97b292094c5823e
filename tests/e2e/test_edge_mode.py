"""Edge mode in real Chromium: MediaPipe Hands runs in the page (served by our own server, installed
by `gesture-maze edge-assets` from the npm registry) and only landmarks go over the play socket.

- A fake webcam holding up two fingers moves the player right with `?edge=1`, and the play socket
  carries no binary frame at all.
- Landmarks found in the browser and on the server for the same reference photos classify the same.
- Without the runtime installed the page says so and streams JPEG frames instead.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import httpx
import pytest
from websockets.sync.client import connect

from maze import Direction, generate_maze
from stream.settings import Settings
from stream.web.edge_assets import AssetError, fetch, is_installed
from tests.e2e.conftest import (
    VIEWPORT,
    create_session,
    run_until_wall,
    seed_where,
    wait_for_position,
    watch_errors,
)
from tests.support.paths import in_ci
from tests.support.server import live_server

pytestmark = pytest.mark.e2e

SIZE = 7
AGREEMENT = 0.95
RUNTIME_SCRIPT = "**/vendor/mediapipe-hands/hands.js"


@pytest.fixture(scope="session")
def edge_assets() -> Path:
    """The browser runtime, fetched once into the default GM_EDGE_ASSETS_DIR (as a user would)."""
    root = Path(Settings.from_env({}).edge_assets_dir).expanduser()
    try:
        fetch(root)
    except AssetError as exc:
        (pytest.fail if in_ci() else pytest.skip)(f"edge mode's runtime could not be fetched: {exc}")
    assert is_installed(root)
    return root


def _binary_and_text(page, received: list[str] | None = None) -> tuple[list[int], list[str]]:
    """Sizes of binary messages and texts of messages the page sends on its play socket (and, into
    `received`, the texts it gets)."""
    binary: list[int] = []
    texts: list[str] = []

    def on_socket(ws) -> None:
        if "/ws/play/" not in ws.url:
            return

        def sent(payload) -> None:
            if isinstance(payload, bytes | bytearray):
                binary.append(len(payload))
            else:
                texts.append(payload)

        def got(payload) -> None:
            if received is not None and isinstance(payload, str):
                received.append(payload)

        ws.on("framesent", sent)
        ws.on("framereceived", got)

    page.on("websocket", on_socket)
    return binary, texts


_OVERLAY_DRAWN = """() => {
  const canvas = document.getElementById("overlay");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) return true;
  return false;
}"""


def test_edge_mode_plays_with_landmarks_only(settings, edge_assets, launch, peace_video) -> None:
    seed = seed_where(SIZE, SIZE, lambda m: m.can_move(m.start, Direction.RIGHT))
    maze = generate_maze(SIZE, SIZE, seed)
    expected = run_until_wall(maze, maze.start, Direction.RIGHT)
    with live_server(settings) as server, launch(video=peace_video, webgl=True) as browser:
        page = browser.new_context(viewport=VIEWPORT).new_page()
        errors = watch_errors(page)
        received: list[str] = []
        binary, texts = _binary_and_text(page, received)
        # The runtime is held back until a game has started with the camera on: the moment a JPEG frame
        # could slip out before the hand finder is ready.
        held: list = []
        page.route(RUNTIME_SCRIPT, lambda route: route.continue_() if held is None else held.append(route))
        page.goto(f"{server.http_url}/?edge=1&countdown=0&seed={seed}")
        page.wait_for_selector('#edge-status[data-state="loading"]')
        page.wait_for_selector('#camera-state[data-state="on"]')
        page.select_option("#start-scheme", "counting")
        page.click("#start-button")
        page.wait_for_function("() => 'playerX' in document.getElementById('maze').dataset")
        waiting, held = held, None
        for route in waiting:
            route.continue_()
        page.wait_for_selector('#edge-status[data-state="on"]', timeout=90_000)
        assert "never leaves this device" in page.text_content("#edge-status")
        assert "picture stays on this device" in page.text_content("#intro-privacy")
        wait_for_position(page, expected, timeout=90_000)
        landmarks = [json.loads(t) for t in texts if '"landmarks"' in t]
        assert sum(1 for m in landmarks if m["hand"] is not None) >= 3, texts[:3]
        assert binary == [], f"{len(binary)} binary messages went out in edge mode"
        # The server does not echo the page's own points; the page draws the skeleton from them.
        replies = [json.loads(t) for t in received if t.startswith('{"type":"frame"')]
        assert any(r["hand"] for r in replies) and all(r["landmarks"] is None for r in replies), replies[:3]
        page.wait_for_function(_OVERLAY_DRAWN, timeout=30_000)
        assert page.is_checked("#set-edge")
        assert not errors.uncaught(), errors


def test_browser_and_server_landmarks_classify_the_same(settings, edge_assets, launch, gestures_dir) -> None:
    photos = sorted(gestures_dir.glob("*.jpg"))
    views: list[tuple[str, bytes]] = []
    for photo in photos:  # each photo and its mirror image: twice the views, both hands
        image = cv2.imread(str(photo))
        views.append((photo.stem, cv2.imencode(".jpg", image)[1].tobytes()))
        views.append((photo.stem + "-mirrored", cv2.imencode(".jpg", cv2.flip(image, 1))[1].tobytes()))
    with live_server(settings) as server, launch(camera=False, webgl=True) as browser:
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.goto(f"{server.http_url}/watch.html")  # any page of ours: the module loads from our origin
        found = page.evaluate(
            """async (images) => {
                const { EdgeLandmarker } = await import('/js/edge.js');
                const landmarker = await EdgeLandmarker.load();
                const out = [];
                for (const src of images) {  // unrelated photos, not a video: each found afresh
                    const img = new Image(); img.src = src; await img.decode();
                    out.push(await landmarker.readStill(img));
                }
                return out;
            }""",
            ["data:image/jpeg;base64," + base64.b64encode(data).decode() for _, data in views],
        )
        created = create_session(server)
        agree, compared, table = 0, 0, []
        play_url = server.ws_url + created["play_url"]
        with connect(play_url) as ws, httpx.Client(base_url=server.http_url) as http:
            for (name, data), message in zip(views, found, strict=True):
                served = http.post("/predict", content=data, headers={"content-type": "image/jpeg"}).json()
                if served["gesture"] is None and message["hand"] is None:
                    continue  # neither finds a hand: nothing to compare
                ws.send(json.dumps(message))
                reply = _frame_reply(ws)
                compared += 1
                agree += reply["gesture"] == served["gesture"]
                table.append((name, served["gesture"], reply["gesture"]))
        print("\n".join(f"{n:20} server {s!s:15} browser {b}" for n, s, b in table))
        assert compared >= len(photos), table
        assert agree / compared >= AGREEMENT, table


def _frame_reply(ws) -> dict:
    while True:
        message = json.loads(ws.recv(timeout=30))
        if message["type"] == "frame":
            return message
        assert message["type"] != "error", message


def test_without_the_runtime_the_page_says_so_and_streams_jpeg(
    settings, launch, peace_video, tmp_path
) -> None:
    empty = tmp_path / "no-edge-assets"
    with live_server(settings, edge_assets_dir=str(empty)) as server, launch(video=peace_video) as browser:
        session = create_session(server, scheme="counting")
        page = browser.new_context(viewport=VIEWPORT).new_page()
        binary, _ = _binary_and_text(page)
        page.goto(f"{server.http_url}/?edge=1&countdown=0#session={session['session_id']}"
                  f"&token={session['player_token']}")
        page.wait_for_selector('#edge-status[data-state="fallback"]', timeout=60_000)
        assert "instead" in page.text_content("#edge-status")
        page.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=60_000)
        assert binary, "no JPEG frames were sent after the fallback"
