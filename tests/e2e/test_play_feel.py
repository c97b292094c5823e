"""Play that feels right (issue 28, the page's part), in real Chromium with a fake webcam.

- a camera that stops (track ended, permission withdrawn) is noticed within 2 s, nothing more is
  sent, and turning it on again resumes;
- on a 390x844 touch phone the gesture help is on the start card and next to the readout, Undo is
  on the first screen, and the hints are for touch; on the desktop they are for keys;
- the readout: human labels, no stale or borrowed badges, no fps spike, no cut-off name, and a layout
  that stays put while the states change;
- watch links tolerate what chat apps add to them, and a wrong one says so once and stops.

One server and one browser for the module; every wait is for a condition.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from maze import Direction, Point, generate_maze
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
from tests.support.video import BACKGROUND, HEIGHT, WIDTH, letterbox, write_y4m

pytestmark = pytest.mark.e2e

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
CAMERA_STOPPED = "Camera stopped — turn it on again"
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
def peace_then_nothing(tmp_path_factory: pytest.TempPathFactory, gestures_dir: Path) -> Path:
    """Two fingers for 4 s (a held gesture: moves, then wall bumps), then 3 s of an empty wall; looped."""
    import cv2

    peace = letterbox(cv2.imread(str(gestures_dir / "peace.jpg")))
    empty = np.full((HEIGHT, WIDTH, 3), BACKGROUND, dtype=np.uint8)
    fps = 10
    frames = [peace] * (4 * fps) + [empty] * (3 * fps)
    return write_y4m(tmp_path_factory.mktemp("video") / "peace-then-nothing.y4m", frames, fps)


@pytest.fixture(scope="module")
def browser(chromium: str, peace_then_nothing: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    args = [*BASE_ARGS, *CAMERA_ARGS, f"--use-file-for-fake-video-capture={peace_then_nothing}"]
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
        yield launched
        launched.close()


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


def right_open_seed() -> int:
    return seed_where(SIZE, SIZE, lambda m: m.can_move(m.start, Direction.RIGHT))


def play(page, server: LiveServer, session: dict, query: str = "countdown=0") -> None:
    page.goto(f"{server.http_url}/?{query}#session={session['session_id']}&token={session['player_token']}")
    page.wait_for_function("document.getElementById('maze').dataset.version !== ''", timeout=15_000)


def frames_sent(page) -> int:
    return int(page.get_attribute("#stats", "data-sent") or 0)


def set_camera_permission(page, setting: str) -> None:
    """Grant or withdraw the camera permission of the page's browser context, as site settings would."""
    target = page.context.new_cdp_session(page)
    context_id = target.send("Target.getTargetInfo")["targetInfo"]["browserContextId"]
    target.detach()
    cdp = page.context.browser.new_browser_cdp_session()
    origin = page.evaluate("location.origin")
    cdp.send(
        "Browser.setPermission",
        {
            "permission": {"name": "camera"},
            "setting": setting,
            "origin": origin,
            "browserContextId": context_id,
        },
    )
    cdp.detach()


# ---- 1. a camera that stops --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["permission_revoked", "track_stopped"])
def test_stopped_camera_is_noticed_and_turning_it_on_resumes(feel_server, browser, artifacts, how):
    session = create_session(feel_server, width=SIZE, height=SIZE, seed=right_open_seed())
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        errors = watch_errors(page)
        binary_sent: list[float] = []

        def on_sent(payload: str | bytes) -> None:
            if isinstance(payload, bytes):
                binary_sent.append(time.monotonic())

        page.on("websocket", lambda ws: ws.on("framesent", on_sent))
        play(page, feel_server, session)
        page.wait_for_selector('#camera-state[data-on="true"]', timeout=15_000)
        page.wait_for_function(
            "Number(document.getElementById('stats').dataset.replies) >= 3", timeout=30_000
        )

        stopped_at = time.monotonic()
        if how == "permission_revoked":
            set_camera_permission(page, "denied")  # the track ends, the permission turns to denied
        else:
            # track.stop() fires no "ended" event: the page must notice by itself.
            page.evaluate("document.getElementById('video').srcObject.getTracks().forEach(t => t.stop())")
        page.wait_for_function(
            "text => document.getElementById('pause-note').textContent === text"
            " && !document.getElementById('pause-note').hidden",
            arg=CAMERA_STOPPED,
            timeout=2_000,
        )
        noticed_s = time.monotonic() - stopped_at
        assert noticed_s < 2.0
        assert page.is_visible(f"text={CAMERA_STOPPED}")
        assert page.is_hidden("#banner")  # said in place: nothing pushes the game down
        assert page.text_content("#camera-state") == "camera stopped"
        assert page.is_visible("#camera-start")  # the way back is right there
        page.screenshot(path=str(artifacts / "camera-stopped.png"))

        # Nothing more goes out: not one frame in the next 1.5 s (black frames used to keep flowing).
        sent = frames_sent(page)
        noticed = time.monotonic()
        page.wait_for_timeout(1_500)  # a quiet period is the thing measured here
        assert frames_sent(page) == sent
        assert [t for t in binary_sent if t > noticed] == []

        if how == "permission_revoked":
            set_camera_permission(page, "granted")
        page.click("#camera-start")
        page.wait_for_selector('#camera-state[data-on="true"]', timeout=15_000)
        page.wait_for_function("n => Number(document.getElementById('stats').dataset.sent) > n + 3", arg=sent,
                               timeout=30_000)
        page.wait_for_selector("#gesture-name[data-gesture]:not([data-gesture=''])", timeout=30_000)
        assert page.is_hidden("#pause-note") and page.is_hidden("#banner")
        assert errors.uncaught() == []
    finally:
        context.close()


# ---- 2. phone: help, undo, hints ----------------------------------------------------------------------


def visible_text(page) -> str:
    return page.locator("body").inner_text()


def test_phone_help_undo_and_touch_hints(feel_server, browser, artifacts):
    seed = right_open_seed()
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        errors = watch_errors(page)
        page.goto(f"{feel_server.http_url}/?countdown=0&seed={seed}")
        # The start card: compact gesture help, one icon per direction, on the first screen.
        page.wait_for_selector("#start-help li", timeout=10_000)
        assert page.locator("#start-help li").count() == 4
        assert in_viewport(page, "#start-help") and in_viewport(page, "#start-button")
        page.screenshot(path=str(artifacts / "phone-start.png"))
        text = visible_text(page)
        assert "press N" not in text and "arrow keys" not in text.lower() and "Keyboard" not in text

        page.click("#start-button")
        # Playing: the held gesture moves, then bumps the wall; Undo is offered within the first screen,
        # beside the help next to the readout.
        page.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=30_000)
        page.wait_for_selector("#undo:not([hidden])", timeout=30_000)
        for selector in ("#maze", "#touchpad", "#undo", "#gesture-name", "#mini-legend", "#video"):
            assert in_viewport(page, selector), selector
        assert page.locator("#mini-legend li").count() == 4
        page.screenshot(path=str(artifacts / "phone-undo.png"))
        text = visible_text(page)
        assert "press N" not in text and "Keyboard" not in text and "arrow keys" not in text.lower()
        assert "Swipe" in text
        assert errors.uncaught() == []
    finally:
        context.close()


def test_desktop_hints_are_for_keys(feel_server, browser):
    session = create_session(feel_server, width=SIZE, height=SIZE)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        play(page, feel_server, session)
        page.wait_for_selector("#mini-legend li", timeout=10_000)
        text = visible_text(page)
        assert "swipe" not in text.lower() and "tap " not in text.lower()
        assert "Keyboard" in text and page.is_visible("#mini-legend")
    finally:
        context.close()


# ---- 3. the readout --------------------------------------------------------------------------------

# Recorded in the page: every fps text shown, and each time the hand left while a badge was still up.
READOUT_PROBE = """
window.__probe = { fps: [], staleBadge: [], boxes: [] };
document.addEventListener('DOMContentLoaded', () => {
  const $ = (id) => document.getElementById(id);
  new MutationObserver(() => window.__probe.fps.push($('stat-fps').textContent))
    .observe($('stat-fps'), { childList: true, characterData: true, subtree: true });
  new MutationObserver(() => {
    const name = $('gesture-name').textContent;
    if (name === 'No hand' && $('command').dataset.active === 'true') {
      window.__probe.staleBadge.push(performance.now());
    }
    if (window.__probe.measure) {
      const box = (id) => { const r = $(id).getBoundingClientRect();
        return [r.x + scrollX, r.y + scrollY, r.width, r.height].map(Math.round); };
      window.__probe.boxes.push({ state: name + '|' + ($('command').dataset.result || '-') + '|'
        + ($('pause-note').hidden ? '' : $('pause-note').dataset.state),
        readout: box('readout'), calibrate: box('calibrate-start'), command: box('command'),
        help: box('mini-legend') });
    }
  }).observe($('readout'), { childList: true, characterData: true, subtree: true, attributes: true });
});
"""

LABELS = ["Resting hand", "Thumb down", "Open palm", "One finger", "No hand", "Not sure", "Paused", "Peace",
          "Peace inverted", "Two up inverted"]


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_readout_labels_badges_fps_and_stable_layout(feel_server, browser, artifacts, device):
    seed = seed_where(SIZE, SIZE, lambda m: m.can_move(m.start, Direction.RIGHT)
                      and run_until_wall(m, m.start, Direction.RIGHT) != m.start
                      and any(m.can_move(run_until_wall(m, m.start, Direction.RIGHT), d)
                              for d in (Direction.UP, Direction.DOWN)))
    maze = generate_maze(SIZE, SIZE, seed)
    wall_at = run_until_wall(maze, maze.start, Direction.RIGHT)
    session = create_session(feel_server, width=SIZE, height=SIZE, seed=seed)
    context = browser.new_context(**(PHONE if device == "phone" else {"viewport": VIEWPORT}))
    context.add_init_script(READOUT_PROBE)
    try:
        page = context.new_page()
        errors = watch_errors(page)
        play(page, feel_server, session, query="countdown=3")
        # Human labels: the class "peace" reads "Peace"; the wire's names stay on data-gesture.
        page.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=30_000)
        assert page.text_content("#gesture-name") == "Peace"
        labels = page.evaluate("""async () => { const g = await import('/js/gestures.js');
            return ['no_gesture', 'peace', 'dislike', 'two_up_inverted'].map(g.gestureLabel); }""")
        assert labels == ["Resting hand", "Peace", "Thumb down", "Two up inverted"]
        page.evaluate("window.__probe.measure = true")

        # Held at the wall: the red badge, for the gesture. Then the hand leaves: the badge goes with it.
        wait_for_position(page, wall_at, timeout=30_000)
        page.wait_for_selector('#command[data-result="wall"]', timeout=15_000)
        page.wait_for_selector("#gesture-name:has-text('No hand')", timeout=15_000)
        page.wait_for_selector('#command[data-active="false"]', timeout=1_000)
        page.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=15_000)
        page.wait_for_selector('#command[data-active="true"]', timeout=15_000)

        # A key's move is not paired with the gesture shown: the badge next to the gesture clears.
        direction = next(d for d in (Direction.UP, Direction.DOWN) if maze.can_move(wall_at, d))
        page.keyboard.press(KEYS[direction])
        wait_for_position(page, Point(wall_at.x + direction.dx, wall_at.y + direction.dy), timeout=10_000)
        assert page.get_attribute("#command", "data-active") == "false"
        assert page.text_content("#command") == "·"

        # Camera stopped and back: still the same boxes.
        page.evaluate("document.getElementById('video').srcObject.getTracks().forEach(t => t.stop())")
        page.wait_for_selector('#pause-note[data-state="camera"]', timeout=2_000)
        page.click("#camera-start")
        page.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=30_000)
        probe = page.evaluate("window.__probe")

        # No fps spike: "—" until the frames span a second, never more than twice the 15 fps target.
        assert probe["fps"] and probe["fps"][0] == "—"
        rates = [float(v) for v in probe["fps"] if v not in ("—", "")]
        assert rates and max(rates) < 30, max(rates)
        assert probe["staleBadge"] == []

        # Stable: the readout, its badge, the help and the Calibrate button never moved or resized.
        states = {b["state"] for b in probe["boxes"]}
        assert len(states) >= 4, states
        for part in ("readout", "calibrate", "command", "help"):
            seen = {tuple(b[part]) for b in probe["boxes"]}
            assert len(seen) == 1, (part, seen, states)

        # No name is cut off, whichever is shown.
        cut = page.evaluate("""async labels => { const el = document.getElementById('gesture-name');
            const before = el.textContent; const out = [];
            for (const l of labels) {
              el.textContent = l;
              await new Promise((resolve) => setTimeout(resolve, 0));  // the page fits the name to its box
              const tooSmall = parseFloat(getComputedStyle(el).fontSize) < 12;
              if (el.scrollWidth > el.clientWidth + 1 || tooSmall) out.push(l);
            }
            el.textContent = before; return out; }""", LABELS)
        assert cut == []
        assert errors.uncaught() == []
    finally:
        context.close()


# ---- 4. watch links ------------------------------------------------------------------------------


def test_watch_links_forgive_what_chat_adds_and_a_wrong_one_stops(feel_server, browser):
    session = create_session(feel_server, width=5, height=5)
    sid = session["session_id"]
    context = browser.new_context(viewport=VIEWPORT)
    try:
        for raw in (f"{sid}/", f"{sid}.", f"%20{sid}%20", f"{sid}/.", f"{sid}%0A"):
            page = context.new_page()
            page.goto(f"{feel_server.http_url}/watch.html?session={raw}")
            page.wait_for_selector('#conn[data-state="open"]', timeout=15_000)
            page.wait_for_function("document.getElementById('maze').dataset.version !== ''", timeout=15_000)
            assert page.text_content("#session-label") == sid
            assert page.url.endswith(f"?session={sid}")
            page.close()

        page = context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(f"{feel_server.http_url}/watch.html?session=no-such-game/")
        page.wait_for_selector('#banner[data-code="bad_link"]', timeout=10_000)
        assert "doesn't lead to a game" in page.text_content("#banner")
        assert page.text_content("#conn") != "Ended"
        assert not page.is_visible("text=waiting for the player")
        assert page.is_hidden("#maze")
        page.wait_for_timeout(3_000)  # long enough for several retries, had there been any
        assert len(sockets) == 1, sockets
        assert page.locator("#banner").count() == 1
    finally:
        context.close()


# ---- what the page says of the server's undo and calibration answers ------------------------------


def test_undo_and_calibration_answers_in_plain_words(feel_server, browser):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(f"{feel_server.http_url}/lobby.html")  # any page of the app: the modules load from it
        texts = page.evaluate("""async () => {
          const { undoneText } = await import('/js/feedback.js');
          const { Calibration } = await import('/js/calibration.js');
          const slot = document.createElement('div');
          document.body.append(slot);
          const calibration = new Calibration({ slot, send: () => true, ready: () => false });
          const verdict = (step) => {
            calibration.onMessage({ type: 'calibration', recording: null, samples: { peace: 20 },
                                    donate: false, step });
            return slot.querySelector('#calibration-verdict').textContent;
          };
          calibration.onMessage({ type: 'calibration', recording: null, samples: {}, donate: false });
          const none = slot.querySelector('#calibration-verdict').hidden;
          return {
            one: undoneText({ type: 'undone', direction: 'left', gesture: 'four', stored: false, steps: 1,
                              moves: 1, paused: false }),
            stored: undoneText({ type: 'undone', direction: 'left', stored: true, steps: 1, moves: 1 }),
            several: undoneText({ type: 'undone', direction: 'left', steps: 3, moves: 4, paused: true,
                                  stored: false }),
            storedSeveral: undoneText({ type: 'undone', direction: 'left', steps: 2, moves: 2,
                                        stored: true }),
            bump: undoneText({ type: 'undone', direction: 'left', steps: 0, moves: 2, stored: false }),
            noVerdict: none,
            ok: verdict({ gesture: 'peace', frames: 30, matched: 25, seen: 'two_up', accepted: true }),
            wrong: verdict({ gesture: 'peace', frames: 30, matched: 1, seen: 'palm', accepted: false }),
            noHand: verdict({ gesture: 'peace', frames: 0, matched: 0, seen: null, accepted: false }),
          };
        }""")
        assert texts == {
            "one": "Undone.",
            "stored": "Undone — thanks, noted for the model.",
            "several": "Undone: 3 moves taken back. Change your hand to steer again.",
            "storedSeveral": "Undone: 2 moves taken back — thanks, noted for the model.",
            "bump": "Undone (the last try hit a wall; nothing moved).",
            "noVerdict": True,
            "ok": "Peace: got it.",
            "wrong": "Peace: that looked like Open palm. Try that step again.",
            "noHand": "Peace: that looked like no hand. Try that step again.",
        }
    finally:
        context.close()
