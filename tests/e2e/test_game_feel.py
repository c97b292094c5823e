"""Game feel on a phone (390x844, touch) and on the desktop, in real Chromium with a fake webcam.

One server and one browser serve the whole module (the e2e budget is ~2 minutes of CI). The webcam
shows two raised fingers (`peace`, counting scheme: right) the whole time, i.e. a gesture that is
held: exactly the case the countdown, the wall cue, the shared-control lockout and the neutral-hand
rule are about.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from maze import Direction, Point, generate_maze, solve
from tests.e2e.conftest import (
    BASE_ARGS,
    CAMERA_ARGS,
    VIEWPORT,
    create_session,
    player_position,
    run_until_wall,
    seed_where,
    wait_for_position,
    watch_errors,
)
from tests.e2e.netproxy import DroppingProxy
from tests.support.server import LiveServer, live_server

pytestmark = pytest.mark.e2e

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
SIZE = 7
KEYS = {
    Direction.UP: "ArrowUp",
    Direction.DOWN: "ArrowDown",
    Direction.LEFT: "ArrowLeft",
    Direction.RIGHT: "ArrowRight",
}


@pytest.fixture(scope="module")
def feel_server() -> Iterator[LiveServer]:
    from stream.settings import Settings

    with live_server(Settings.from_env({})) as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium: str, peace_video) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    args = [*BASE_ARGS, *CAMERA_ARGS, f"--use-file-for-fake-video-capture={peace_video}"]
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
        yield launched
        launched.close()


# The question frontend/js/player.js autoStartCamera() asks before it turns the camera on by itself.
CAMERA_GRANTED = "navigator.permissions.query({name: 'camera'}).then(s => s.state === 'granted')"


def in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return (
        box is not None
        and box["width"] > 0
        and box["y"] >= 0
        and box["x"] >= 0
        and box["y"] + box["height"] <= size["height"]
        and box["x"] + box["width"] <= size["width"]
    )


def swipe(page, direction: Direction, selector: str = "#maze") -> None:
    """A real touch swipe (touchStart, touchMove x5, touchEnd) through the DevTools protocol."""
    box = page.locator(selector).bounding_box()
    x0, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)
    points = [(x0 + direction.dx * 12 * i, y0 + direction.dy * 12 * i) for i in range(7)]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for x, y in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def server_state(server: LiveServer, sid: str) -> dict:
    return httpx.get(f"{server.http_url}/api/sessions/{sid}", timeout=10).json()


def test_phone_play_countdown_swipe_wall_cue_and_outage(feel_server, browser, artifacts):
    # Right is open from the start, and where a held "right" stops, another direction is open.
    def fits(m):
        end = run_until_wall(m, m.start, Direction.RIGHT)
        return end != m.start and any(m.can_move(end, d) for d in (Direction.DOWN, Direction.UP))

    seed = seed_where(SIZE, SIZE, fits)
    maze = generate_maze(SIZE, SIZE, seed)
    wall_at = run_until_wall(maze, maze.start, Direction.RIGHT)
    session = create_session(feel_server, width=SIZE, height=SIZE, seed=seed, name="Phone Test")
    sid = session["session_id"]
    proxy = DroppingProxy(feel_server.port)
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        errors = watch_errors(page)
        opened = time.monotonic()
        page.goto(f"{proxy.http_url}/#session={sid}&token={session['player_token']}")

        # The camera is live: a 3-2-1 start, during which a held gesture does not move the ball and the
        # server's clock has not started.
        page.wait_for_selector("#countdown:not([hidden])", timeout=15_000)
        assert "two fingers to go →" in page.text_content("#countdown-hint")  # an open first move
        page.screenshot(path=str(artifacts / "phone-countdown.png"))
        assert player_position(page) == (maze.start.x, maze.start.y)
        assert server_state(feel_server, sid)["moves"] == 0
        assert page.text_content("#hud-time") == "0:00"
        assert page.get_attribute("#stats", "data-sent") in (None, "0")  # no frames during the countdown
        page.wait_for_selector("#countdown[hidden]", state="attached", timeout=10_000)

        # After the countdown the held gesture is recognised and steers right until the wall.
        page.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=30_000)
        wait_for_position(page, wall_at, timeout=30_000)
        first_move_s = time.monotonic() - opened
        # The maze and the recognised gesture share the phone's screen while playing.
        assert (
            in_viewport(page, "#maze") and in_viewport(page, "#gesture-name") and in_viewport(page, "#video")
        )
        assert in_viewport(page, "#touchpad") and page.text_content("#conn") == "Connected"

        # Still holding "right" at the wall: a wall bump, shown as a wall (red "Wall →"), not as a move.
        page.wait_for_selector('#command[data-result="wall"][data-command="right"]', timeout=15_000)
        assert "Wall" in page.text_content("#command")
        page.wait_for_selector('#maze[data-cue="wall"]', timeout=5_000)
        assert player_position(page) == (wall_at.x, wall_at.y)
        page.screenshot(path=str(artifacts / "phone-wall.png"))

        # A swipe moves the player; gestures pause for a moment after manual input, so it is not undone.
        direction = next(d for d in (Direction.DOWN, Direction.UP) if maze.can_move(wall_at, d))
        target = Point(wall_at.x + direction.dx, wall_at.y + direction.dy)
        swipe(page, direction)
        wait_for_position(page, target, timeout=10_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "phone.png"))

        # Outage: the recognition panel and clock freeze as "paused"; back, the page says "resumed".
        clock_before = page.text_content("#hud-time")
        proxy.drop()
        page.wait_for_selector('#pause-note[data-state="paused"]', timeout=10_000)
        assert "Paused" in page.text_content("#pause-note")
        assert page.text_content("#gesture-name") == "Paused"
        assert page.get_attribute("#command", "data-active") == "false"
        frozen = page.text_content("#hud-time")
        page.wait_for_timeout(2_200)
        assert page.text_content("#hud-time") == frozen
        page.screenshot(path=str(artifacts / "phone-paused.png"))
        proxy.restore()
        page.wait_for_selector('#pause-note[data-state="resumed"]', timeout=20_000)
        assert "Resumed" in page.text_content("#pause-note")
        page.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=20_000)
        assert clock_before <= page.text_content("#hud-time")

        # Landscape: the maze on the left, the camera strip and the readout on the right, one screen.
        page.set_viewport_size({"width": 844, "height": 390})
        page.wait_for_timeout(400)
        assert (
            in_viewport(page, "#maze") and in_viewport(page, "#gesture-name") and in_viewport(page, "#video")
        )
        page.screenshot(path=str(artifacts / "phone-landscape.png"))
        assert errors.uncaught() == []
        (artifacts / "first-move-seconds.txt").write_text(f"{first_move_s:.1f}\n")
    finally:
        context.close()
        proxy.close()


def test_neutral_hand_rule_shared_skeleton_and_watch_pages(feel_server, browser, artifacts):
    seed = seed_where(
        5, 5, lambda m: len(solve(m, m.start)) >= 4 and not m.can_move(m.start, Direction.RIGHT)
    )
    maze = generate_maze(5, 5, seed)
    path = solve(maze, maze.start)
    session = create_session(feel_server, width=5, height=5, seed=seed)
    sid = session["session_id"]
    assert len(session["name"].split()) == 2  # a friendly generated name
    context = browser.new_context(**PHONE)
    try:
        player = context.new_page()
        errors = watch_errors(player)
        player.goto(f"{feel_server.http_url}/?countdown=0#session={sid}&token={session['player_token']}")
        player.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=30_000)

        # Spectator: the game's name, and no hand skeleton while the player has not opted in.
        spectator = context.new_page()
        spectator.goto(f"{feel_server.http_url}/watch.html?session={sid}")
        spectator.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=15_000)
        assert spectator.text_content("#game-name") == session["name"]
        assert spectator.is_hidden("#hand-view")
        assert spectator.get_attribute("#hand-canvas", "data-points") in (None, "0")
        player.check("#share-hand")
        spectator.wait_for_selector('#hand-canvas[data-points="21"]', timeout=15_000)
        assert spectator.is_visible("#hand-view")
        spectator.screenshot(path=str(artifacts / "phone-spectator.png"))
        player.uncheck("#share-hand")
        spectator.wait_for_selector("#hand-view[hidden]", state="attached", timeout=10_000)

        # Solve by keyboard while the camera still shows "right" (manual input wins for a moment).
        point = maze.start
        for direction in path:
            player.keyboard.press(KEYS[direction])
            point = Point(point.x + direction.dx, point.y + direction.dy)
            wait_for_position(player, point, timeout=10_000)
        player.wait_for_selector("#win-card:not([hidden])", timeout=10_000)
        # The gesture is still held: the win card stays and the level does not change by itself.
        player.wait_for_timeout(3_000)
        assert player.get_attribute("#maze", "data-level") == "1" and player.is_visible("#win-card")
        player.screenshot(path=str(artifacts / "phone-win.png"))
        spectator.wait_for_selector("#win-card:not([hidden])", timeout=5_000)
        # A tap starts the next level; the held gesture does not move the ball there.
        player.tap("#next-level")
        player.wait_for_function("document.getElementById('maze').dataset.level === '2'", timeout=10_000)
        start2 = player_position(player)
        player.wait_for_timeout(2_500)
        assert player_position(player) == start2 and player.get_attribute("#maze", "data-moves") == "0"
        assert errors.uncaught() == []

        # Watch links: a wrong id says so (no blank maze); the lobby shows the name, live games first.
        wrong = context.new_page()
        wrong.goto(f"{feel_server.http_url}/watch.html?session=no-such-game")
        banner = wrong.wait_for_selector('#banner[data-code="bad_link"]', timeout=10_000)
        assert "link" in banner.text_content()
        assert wrong.is_hidden("#maze")
        away = create_session(feel_server, width=5, height=5, name="Nobody Home")
        lobby = context.new_page()
        lobby.goto(f"{feel_server.http_url}/lobby.html")
        lobby.wait_for_selector(f'[data-session-id="{away["session_id"]}"]', timeout=10_000)
        order = lobby.eval_on_selector_all(".session-card", "cards => cards.map(c => c.dataset.sessionId)")
        assert order.index(sid) < order.index(away["session_id"])
        assert session["name"] in lobby.text_content(f'[data-session-id="{sid}"]')

        # The spectator follows the player's real state: away when the player's page closes.
        player.close()
        spectator.wait_for_selector('#player-pill[data-state="away"]', timeout=10_000)
    finally:
        context.close()


def test_new_user_first_move_on_the_desktop(feel_server, browser, artifacts):
    """A first visit: open the page, start a game, camera on, 3-2-1, two fingers: the first move."""
    seed = seed_where(SIZE, SIZE, lambda m: m.can_move(m.start, Direction.RIGHT))
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        errors = watch_errors(page)
        opened = time.monotonic()
        page.goto(f"{feel_server.http_url}/?seed={seed}")
        page.fill("#start-name", "Brave Otter")
        page.click("#start-button")
        # This browser already has the camera permission (fake UI), so the page turns the camera on by
        # itself, asynchronously: "Turn on camera" is disabled meanwhile and then goes away. It is not
        # clicked: a click aimed at it while it is still visible (a busy machine starts the camera
        # slowly) waits for a button that never comes back, until the click times out.
        assert page.evaluate(CAMERA_GRANTED), "the page would not start the camera by itself"
        page.wait_for_selector("#countdown:not([hidden])", timeout=15_000)  # the camera is on
        page.wait_for_function("Number(document.getElementById('maze').dataset.moves) >= 1", timeout=60_000)
        first_move_s = time.monotonic() - opened
        assert first_move_s < 60
        stats = page.eval_on_selector("#stats", "el => el.dataset")
        page.wait_for_selector('#command[data-result="wall"]', timeout=30_000)
        page.wait_for_timeout(2_000)  # a couple of seconds of steady streaming for the numbers
        fps, rtt = page.text_content("#stat-fps"), page.text_content("#stat-rtt")
        assert in_viewport(page, "#maze") and in_viewport(page, "#gesture-name")
        assert page.text_content("#game-name") == "Brave Otter"
        page.screenshot(path=str(artifacts / "desktop.png"))
        (artifacts / "game-feel-numbers.txt").write_text(
            f"first_move_s={first_move_s:.1f} fps={fps} rtt_ms={rtt} replies={stats.get('replies')}\n"
        )
        assert errors.uncaught() == []
    finally:
        context.close()
