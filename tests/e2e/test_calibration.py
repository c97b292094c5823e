"""The guided per-player calibration step in a real Chromium with the fake webcam, which shows a
`peace` hand throughout: every prompt is recorded and checked on the server, the steps whose prompt
the hand did not show are refused (their samples dropped, the page says what was seen), the summary
shows what was kept, donating and forgetting reach the server."""

from __future__ import annotations

import json
import time

import pytest

from stream.settings import Settings
from tests.e2e.conftest import VIEWPORT, create_session, watch_errors

pytestmark = pytest.mark.e2e
# frontend/js/calibration.js PROMPTS: the control gestures, then a relaxed hand
PROMPTS = ("one", "peace", "three", "four", "like", "dislike", "relaxed")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({}).replace(data_dir=str(tmp_path))  # donations land here, not in the checkout


def test_calibration_step_records_every_prompt(server, launch, peace_video, artifacts):
    session = create_session(server, width=7, height=7, seed=3, scheme="counting")
    sid, token = session["session_id"], session["player_token"]
    with launch(video=peace_video) as browser:
        page = browser.new_context(viewport=VIEWPORT).new_page()
        errors = watch_errors(page)
        sent: list[str] = []
        received: list[dict] = []
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)
                                                if isinstance(payload, str) else None))
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: received.append(
            json.loads(payload)) if isinstance(payload, str) else None))
        # 300 ms per prompt instead of ~2.4 s: the same steps, shorter.
        page.goto(f"{server.http_url}/?calibration_ms=300#session={sid}&token={token}")
        page.wait_for_selector('#camera-state[data-on="true"]', timeout=15_000)
        page.wait_for_function(
            "Number(document.getElementById('stats').dataset.replies) >= 3", timeout=30_000
        )

        page.click("#calibrate-start")
        page.wait_for_selector('#calibration[data-state="running"]', timeout=5_000)
        page.locator("#calibration").screenshot(path=str(artifacts / "calibration-running.png"))
        page.wait_for_selector('#calibration[data-state="done"]', timeout=30_000)
        for gesture in PROMPTS:
            assert f'"gesture":"{gesture}"' in "".join(sent)  # every prompt was asked for

        def verdicts() -> dict[str, dict]:
            return {m["step"]["gesture"]: m["step"] for m in received
                    if m.get("type") == "calibration" and m.get("step")}

        deadline = time.monotonic() + 10
        while set(verdicts()) != set(PROMPTS):  # every step's verdict comes back
            assert time.monotonic() < deadline, verdicts()
            page.wait_for_timeout(50)  # lets Playwright deliver the socket's frames
        steps = verdicts()
        # The hand showed peace all along: peace (and the resting hand) are kept; a prompt the hand
        # clearly did not show is refused and names what was seen instead.
        assert steps["peace"]["accepted"] and steps["relaxed"]["accepted"], steps
        for gesture in ("three", "four", "like", "dislike"):
            assert not steps[gesture]["accepted"] and steps[gesture]["seen"] == "peace", steps[gesture]
        summary = page.text_content("#calibration-summary")
        assert "peace " in summary and "relaxed " in summary and "three " not in summary, summary
        assert int(page.get_attribute("#calibration", "data-samples")) >= 2

        page.locator("#calibration").screenshot(path=str(artifacts / "calibration-done.png"))
        page.check("#calibration-donate")
        page.wait_for_selector('#calibration[data-donate="true"]', timeout=5_000)
        page.click("#calibration-reset")
        page.wait_for_selector('#calibration[data-samples="0"]', timeout=5_000)
        page.wait_for_selector('#calibration[data-state="idle"]', timeout=5_000)
        assert errors.uncaught() == []
