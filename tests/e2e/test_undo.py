"""Undo in the browser: a fake webcam shows two fingers (a gesture move right), the player clicks
"Undo — that was wrong" (and later presses U): the maze takes the move back. With the consent box
ticked, the correction is stored (landmarks only) in the server's feedback database; unticked, not."""

from __future__ import annotations

import json

import pytest

from maze import Direction, generate_maze
from model.feedback import FeedbackStore, default_feedback_url
from stream.settings import Settings
from tests.e2e.conftest import (
    VIEWPORT,
    create_session,
    player_position,
    seed_where,
    wait_for_position,
    watch_errors,
)
from tests.support.server import live_server
from tests.support.video import gesture_video

pytestmark = pytest.mark.e2e

SIZE = 7


@pytest.fixture
def data_server(tmp_path):
    with live_server(Settings.from_env({}).replace(data_dir=str(tmp_path / "data"), drift_interval_s=0)) as s:
        yield s


def record_gesture_move(payload: str | bytes, moves: list[dict]) -> None:
    if isinstance(payload, str):
        message = json.loads(payload)
        if message.get("type") == "state" and (message.get("last_move") or {}).get("source") == "gesture":
            moves.append(message["last_move"])


def test_undo_button_and_key_take_back_a_gesture_move(data_server, launch, tmp_path, gestures_dir):
    server = data_server
    # Two fingers for half a second (one move right), then an open palm (no move) for 5 s; looped.
    video = gesture_video(tmp_path / "peace-then-palm.y4m", gestures_dir, [("peace", 0.5), ("palm", 5.0)])
    seed = seed_where(SIZE, SIZE, lambda m: m.can_move(m.start, Direction.RIGHT)
                      and m.can_move(m.start.step(Direction.RIGHT), Direction.RIGHT))
    start = generate_maze(SIZE, SIZE, seed).start
    session = create_session(server, width=SIZE, height=SIZE, seed=seed, scheme="counting")

    with launch(video=video) as browser:
        context = browser.new_context(viewport=VIEWPORT)
        # Consent given earlier in this browser (the checkbox remembers it): on before the first move.
        context.add_init_script("localStorage.setItem('gm.feedbackConsent', '1')")
        page = context.new_page()
        errors = watch_errors(page)
        # Every gesture move the server announces to this page (each one offers a fresh undo).
        gesture_moves: list[dict] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: record_gesture_move(
            payload, gesture_moves)))
        page.goto(f"{server.http_url}/#session={session['session_id']}&token={session['player_token']}")
        page.wait_for_function("document.getElementById('maze').dataset.version !== ''", timeout=15_000)
        assert page.is_checked("#feedback-consent")

        # The gesture moves right; the undo button appears right after it.
        page.wait_for_selector("#undo:not([hidden])", timeout=30_000)
        moved = player_position(page)
        assert moved == (start.x + 1, start.y)
        page.select_option("#undo-label", "peace")
        offered = len(gesture_moves)
        page.click("#undo")
        wait_for_position(page, start, timeout=10_000)
        page.wait_for_function("document.getElementById('feedback').dataset.undone === '1'", timeout=10_000)
        assert "noted" in page.text_content("#undo-note")
        # The click withdrew the offer. It is back only if a new gesture move has arrived since (the
        # clip loops, and on a busy machine the next loop can come before this line): the page reads
        # that move's frame before Playwright answers is_hidden, so it is counted by then.
        assert page.is_hidden("#undo") or len(gesture_moves) > offered, gesture_moves

        # Next loop of the clip: another gesture move, taken back with the U key this time.
        page.wait_for_selector("#undo:not([hidden])", timeout=30_000)
        assert player_position(page) == (start.x + 1, start.y)
        page.keyboard.press("u")
        wait_for_position(page, start, timeout=10_000)
        page.wait_for_function("document.getElementById('feedback').dataset.undone === '2'", timeout=10_000)

        # Consent withdrawn with the checkbox: the next undo still works but stores nothing.
        page.uncheck("#feedback-consent")
        page.wait_for_selector("#undo:not([hidden])", timeout=30_000)
        page.click("#undo")
        page.wait_for_function("document.getElementById('feedback').dataset.undone === '3'", timeout=10_000)
        note = page.text_content("#undo-note")
        # Nothing stored without consent; the hand may still show the undone gesture (then it waits).
        assert note in ("Undone.", "Undone. Change your hand to steer again."), note
        assert errors.uncaught() == []

    store = FeedbackStore(default_feedback_url(server.settings.data_dir))
    try:
        events = store.events()
    finally:
        store.close()
    assert [(e.predicted, e.label) for e in events] == [("peace", "peace"), ("peace", None)]
    assert all(e.xy.shape[1:] == (21, 2) and len(e.xy) >= 1 for e in events)
