"""WCAG AA contrast on every page, checked in real Chromium by axe-core's `color-contrast` rule.

axe-core is vendored (tests/e2e/vendor/, MPL-2.0, see its README) and injected into the page under
test: nothing is fetched at run time. Normal text needs 4.5:1 and large text 3:1 against what is
really behind it (axe resolves backgrounds, opacity and overlap). The player page is checked on the
desktop and on a 390x844 phone in its main states (start card, playing with a held gesture bumping a
wall, camera stopped, win card), then the watch page (live and a wrong link) and the lobby. On the
phone no visible text is smaller than 12 px.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maze import Direction, Point, generate_maze, solve
from tests.e2e.conftest import (
    BASE_ARGS,
    CAMERA_ARGS,
    VIEWPORT,
    create_session,
    run_until_wall,
    seed_where,
    wait_for_position,
    watch_errors,
)
from tests.support.server import LiveServer, live_server

pytestmark = pytest.mark.e2e

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DEVICES = {"desktop": {"viewport": VIEWPORT}, "phone": PHONE}
KEYS = {
    Direction.UP: "ArrowUp",
    Direction.DOWN: "ArrowDown",
    Direction.LEFT: "ArrowLeft",
    Direction.RIGHT: "ArrowRight",
}

RUN_AXE = """async (include) => {
  const context = include ? { include: [[include]] } : document;
  const result = await axe.run(context, {
    runOnly: { type: 'rule', values: ['color-contrast'] }, resultTypes: ['violations'],
  });
  return result.violations.flatMap((v) => v.nodes.map((n) => ({
    target: n.target.join(' '), html: n.html.slice(0, 140),
    why: (n.any[0] && n.any[0].message) || n.failureSummary })));
}"""

SMALL_TEXT = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    const shown = el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
    if (!node.textContent.trim() || !shown) continue;
    const box = el.getBoundingClientRect();
    if (box.width <= 1 || box.height <= 1) continue;  // screen-reader-only text
    const px = parseFloat(getComputedStyle(el).fontSize);
    const text = node.textContent.trim().slice(0, 30);
    if (px < 12) out.push(`${el.tagName}#${el.id}.${el.className} "${text}" ${px}px`);
  }
  for (const dir of document.querySelectorAll('.legend li[data-open="false"] .dir')) {
    const px = parseFloat(getComputedStyle(dir, '::after').fontSize);
    if (px < 12) out.push(`legend "wall" tag ${px}px`);
  }
  return out;
}"""


def contrast_violations(page, include: str | None = None) -> list[dict]:
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(RUN_AXE, include)


def assert_readable(page, where: str, phone: bool) -> None:
    violations = contrast_violations(page)
    assert violations == [], f"{where}: {violations}"
    if phone:
        small = page.evaluate(SMALL_TEXT)
        assert small == [], f"{where}: {small}"


@pytest.fixture(scope="module")
def contrast_server() -> Iterator[LiveServer]:
    from stream.settings import Settings

    with live_server(Settings.from_env({})) as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium: str, peace_video: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    args = [*BASE_ARGS, *CAMERA_ARGS, f"--use-file-for-fake-video-capture={peace_video}"]
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
        yield launched
        launched.close()


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_player_page_meets_wcag_aa_contrast(contrast_server, browser, device):
    phone = device == "phone"
    size = 5
    seed = seed_where(
        size, size, lambda m: m.can_move(m.start, Direction.RIGHT) and len(solve(m, m.start)) >= 3
    )
    maze = generate_maze(size, size, seed)
    wall_at = run_until_wall(maze, maze.start, Direction.RIGHT)
    context = browser.new_context(**DEVICES[device])
    try:
        page = context.new_page()
        errors = watch_errors(page)
        page.goto(f"{contrast_server.http_url}/?countdown=0&seed={seed}")
        page.wait_for_selector("#start-help li", timeout=10_000)
        assert_readable(page, "start card", phone)

        page.select_option("#start-size", str(size))
        page.click("#start-button")
        # A held gesture at a wall: the red "Wall" badge (checked while it shows), walled legend rows.
        wait_for_position(page, wall_at, timeout=30_000)
        page.wait_for_selector('#command[data-result="wall"]', timeout=15_000)
        assert contrast_violations(page, "#command") == []
        page.wait_for_selector('#legend li[data-open="false"]', state="attached", timeout=5_000)
        assert_readable(page, "playing", phone)

        # Camera stopped.
        page.evaluate("document.getElementById('video').srcObject.getTracks().forEach(t => t.stop())")
        page.wait_for_selector('#pause-note[data-state="camera"]', timeout=5_000)
        assert_readable(page, "camera stopped", phone)

        # The win card (keys only now: the camera is off).
        point = wall_at
        for direction in solve(maze, wall_at):
            page.keyboard.press(KEYS[direction])
            point = Point(point.x + direction.dx, point.y + direction.dy)
            wait_for_position(page, point, timeout=10_000)
        page.wait_for_selector("#win-card:not([hidden])", timeout=10_000)
        assert_readable(page, "win card", phone)
        assert errors.uncaught() == []
    finally:
        context.close()


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_watch_page_and_lobby_meet_wcag_aa_contrast(contrast_server, browser, device):
    phone = device == "phone"
    session = create_session(contrast_server, width=5, height=5, name="Contrast Check")
    sid = session["session_id"]
    context = browser.new_context(**DEVICES[device])
    try:
        player = context.new_page()
        player.goto(f"{contrast_server.http_url}/?countdown=0#session={sid}&token={session['player_token']}")
        player.wait_for_selector("#gesture-name[data-gesture='peace']", timeout=30_000)

        watch = context.new_page()
        watch.goto(f"{contrast_server.http_url}/watch.html?session={sid}")
        watch.wait_for_selector("#gesture-name[data-gesture='peace']", timeout=15_000)
        assert_readable(watch, "watch page", phone)

        wrong = context.new_page()
        wrong.goto(f"{contrast_server.http_url}/watch.html?session=no-such-game")
        wrong.wait_for_selector('#banner[data-code="bad_link"]', timeout=10_000)
        assert_readable(wrong, "wrong watch link", phone)

        lobby = context.new_page()
        lobby.goto(f"{contrast_server.http_url}/lobby.html")
        lobby.wait_for_selector(f'[data-session-id="{sid}"]', timeout=10_000)
        assert_readable(lobby, "lobby", phone)
    finally:
        context.close()
