"""Real Chromium (Debian's /usr/bin/chromium, headless) driven by Playwright, against the real app.

The webcam is Chromium's fake capture device fed a Y4M clip built from the real gesture photos, so the
whole path is real: getUserMedia -> canvas -> JPEG -> WebSocket -> MediaPipe + classifier -> maze.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from maze import Direction, Maze, Point, generate_maze
from tests.support.paths import require_binary
from tests.support.server import LiveServer
from tests.support.video import gesture_video

VIEWPORT = {"width": 1440, "height": 960}
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Player and spectator pages share one headless browser; keep both at full speed.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
CAMERA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_binary("chromium")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Screenshots go to $GM_ARTIFACTS_DIR when set (e.g. to refresh docs/screenshots), else a temp dir."""
    chosen = os.environ.get("GM_ARTIFACTS_DIR")
    if not chosen:
        return tmp_path_factory.mktemp("artifacts")
    folder = Path(chosen)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def peace_video(tmp_path_factory: pytest.TempPathFactory, gestures_dir: Path) -> Path:
    """A webcam that shows two raised fingers (counting scheme: right) forever."""
    return gesture_video(tmp_path_factory.mktemp("video") / "peace.y4m", gestures_dir, [("peace", 1.0)])


Launch = Callable[..., contextlib.AbstractContextManager]


@pytest.fixture
def launch(chromium: str) -> Iterator[Launch]:
    """`with launch(video=None, camera=True, webgl=False) as browser:` a fresh headless Chromium.

    camera=True auto-accepts the permission prompt and uses the fake device (Chromium's test pattern,
    or `video` when given); camera=False leaves the prompt to be dismissed, i.e. a denied camera.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:

        @contextlib.contextmanager
        def _launch(video: Path | None = None, camera: bool = True, webgl: bool = False):
            # webgl: software WebGL 2 (SwiftShader), which edge mode's in-page hand finder needs.
            args = [a for a in BASE_ARGS if not (webgl and a == "--disable-gpu")]
            if camera:
                args += CAMERA_ARGS
                if video is not None:
                    args.append(f"--use-file-for-fake-video-capture={video}")
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
            try:
                yield browser
            finally:
                browser.close()

        yield _launch


class PageErrors(list):
    """Uncaught exceptions and console errors of a page (failed WebSocket handshakes are expected in
    some tests, so callers decide what to assert)."""

    def uncaught(self) -> list[str]:
        return [e for e in self if e.startswith("pageerror")]


def watch_errors(page) -> PageErrors:
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    return errors


def create_session(server: LiveServer, **body: object) -> dict:
    response = httpx.post(f"{server.http_url}/api/sessions", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def seed_where(width: int, height: int, ok: Callable[[Maze], bool]) -> int:
    """The first maze seed whose level-1 maze satisfies `ok` (mazes are deterministic per seed)."""
    for seed in range(1000):
        if ok(generate_maze(width, height, seed)):
            return seed
    raise AssertionError("no seed found")


def run_until_wall(maze: Maze, start: Point, direction: Direction) -> Point:
    """Where a held gesture ends up: it repeats its move until a wall stops it."""
    point = start
    while maze.can_move(point, direction):
        point = Point(point.x + direction.dx, point.y + direction.dy)
    return point


def player_position(page) -> tuple[int, int]:
    data = page.eval_on_selector("#maze", "el => [el.dataset.playerX, el.dataset.playerY]")
    return int(data[0]), int(data[1])


def wait_for_position(page, point: Point, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([x, y]) => { const d = document.getElementById('maze').dataset;"
        " return d.playerX === String(x) && d.playerY === String(y); }",
        arg=[point.x, point.y],
        timeout=timeout,
    )
