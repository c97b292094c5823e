"""Clickjacking (issue #26 item 10) in the real Chromium: no other site can frame a page of ours
(X-Frame-Options: DENY and CSP frame-ancestors 'none' on every page, from the app), and the consent
boxes ("let my corrections improve the model", donate calibration) change only on a person's own
click on the page itself: never on a script's `click()` / `dispatchEvent`, never while framed."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import VIEWPORT, create_session, watch_errors

pytestmark = pytest.mark.e2e

EVIL = "http://evil.example/"
# Another origin on the same host: headless Chromium denies a cross-site frame its localStorage (the
# player page then fails on its own), so the framed-page check is shown from a same-site origin.
NEIGHBOUR = "http://127.0.0.1:9/evil.html"
PAGES = ("/", "/watch.html", "/lobby.html", "/js/feedback.js", "/no/such/page")


def evil_page(url: str) -> str:
    # The bait under an invisible frame of the player page, as the attacker did.
    return (
        "<!doctype html><title>Win a prize</title><button id=bait>Click to win</button>"
        f'<iframe id=victim src="{url}" style="opacity:0.01;position:absolute;top:0;left:0" '
        'width=1200 height=900></iframe>'
    )


def play_url(server, session) -> str:
    return f"{server.http_url}/#session={session['session_id']}&token={session['player_token']}"


def slot_of(server, session):
    return server.app.state.services.registry.get(session["session_id"]).slot


def test_every_page_refuses_to_be_framed(server, launch):
    for path in PAGES:
        response = httpx.get(f"{server.http_url}{path}", timeout=10)
        assert response.headers.get_list("x-frame-options") == ["DENY"], path
        assert response.headers.get_list("content-security-policy") == ["frame-ancestors 'none'"], path
    session = create_session(server)
    with launch() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        bait = evil_page(play_url(server, session))
        page.route(EVIL, lambda route: route.fulfill(content_type="text/html", body=bait))
        page.goto(EVIL)
        page.wait_for_selector("#bait")
        time.sleep(3)  # ample time for the frame to load, were it allowed to
        framed = [frame for frame in page.frames if frame != page.main_frame]
        assert framed, "the iframe element is there"
        for frame in framed:
            assert frame.query_selector("#feedback-consent") is None, frame.url
        box = page.locator("#bait").bounding_box()
        page.mouse.click(box["x"] + 5, box["y"] + 5)  # the bait click lands on the (empty) frame
        assert slot_of(server, session).feedback.consent is False


def test_consent_in_a_frame_is_ignored_where_framing_is_not_blocked(server, launch):
    # A browser that does not honour the headers (here: Chromium with them stripped on the way) frames
    # the page: the page's own check (window.top !== window.self) still refuses a real click.
    session = create_session(server)
    with launch() as browser:
        context = browser.new_context(viewport=VIEWPORT)

        def strip(route):
            response = route.fetch()
            headers = {k: v for k, v in response.headers.items()
                       if k.lower() not in ("x-frame-options", "content-security-policy")}
            route.fulfill(response=response, headers=headers)

        context.route(f"{server.http_url}/**", strip)
        page = context.new_page()
        bait = evil_page(play_url(server, session))
        page.route(NEIGHBOUR, lambda route: route.fulfill(content_type="text/html", body=bait))
        page.goto(NEIGHBOUR)
        frame = page.frame_locator("#victim")
        box = frame.locator("#feedback-consent")
        box.wait_for(timeout=15_000)
        box.click(force=True)  # a real (trusted) click, inside the frame
        time.sleep(0.5)
        assert not box.is_checked()
        assert slot_of(server, session).feedback.consent is False


def test_only_a_real_click_ticks_the_consent_boxes(server, launch):
    session = create_session(server)
    with launch() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        errors = watch_errors(page)
        page.goto(play_url(server, session))
        page.wait_for_function("document.getElementById('maze').dataset.version !== ''", timeout=15_000)
        slot = slot_of(server, session)
        # Synthetic: a script's click(), a dispatched click, a set + dispatched change.
        for script in (
            "el.click()",
            "el.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true}))",
            "el.checked = true; el.dispatchEvent(new Event('change', {bubbles: true}))",
        ):
            page.evaluate(f"() => {{ const el = document.getElementById('feedback-consent'); {script}; }}")
            assert not page.is_checked("#feedback-consent"), script
        assert page.evaluate("localStorage.getItem('gm.feedbackConsent')") is None
        time.sleep(0.3)
        assert slot.feedback.consent is False
        # A person's click (Playwright sends real input events) ticks it, on the box or on its words.
        page.click("#feedback-consent")
        assert page.is_checked("#feedback-consent")
        _eventually(lambda: slot.feedback.consent is True)
        page.click("text=Let my corrections")
        assert not page.is_checked("#feedback-consent")
        _eventually(lambda: slot.feedback.consent is False)

        # The donate box (shown once calibrated; shown here by hand): the same rules.
        page.evaluate("document.getElementById('calibration-donate-label').hidden = false")
        page.evaluate("document.getElementById('calibration-donate').click()")
        assert not page.is_checked("#calibration-donate")
        time.sleep(0.3)
        assert slot.profile.donate is False
        page.click("#calibration-donate")
        _eventually(lambda: slot.profile.donate is True)
        assert errors.uncaught() == []


def _eventually(check, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the server never saw it"
        time.sleep(0.05)
