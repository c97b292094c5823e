"""Plain-words errors and the lobby, in a real browser."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import VIEWPORT, create_session, watch_errors

pytestmark = pytest.mark.e2e


def test_gone_session_is_explained(server, launch):
    with launch() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        errors = watch_errors(page)
        page.goto(f"{server.http_url}/#session=no-such-game&token=nope")
        banner = page.wait_for_selector('#banner[data-code="session_gone"]', timeout=15_000)
        assert "gone" in banner.text_content()
        # What to do next: the new-game card is back, and the dead session is forgotten.
        page.wait_for_selector("#start-card:not([hidden])")
        assert page.evaluate("sessionStorage.getItem('gesture-maze.session')") is None
        assert errors.uncaught() == []


def test_denied_camera_is_explained(server, launch):
    with launch(camera=False) as browser:
        context = browser.new_context(viewport=VIEWPORT)  # no camera permission granted
        page = context.new_page()
        page.goto(f"{server.http_url}/")
        page.click("#camera-start")
        banner = page.wait_for_selector(
            '#banner[data-code="camera_denied"], #banner[data-code="no_camera"]', timeout=15_000
        )
        assert "arrow keys" in banner.text_content()
        assert page.is_visible("#camera-start")


def test_lobby_lists_live_games_and_refreshes(server, launch):
    first = create_session(server, width=5, height=5)
    hidden = create_session(server, width=5, height=5, private=True)
    with launch() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        errors = watch_errors(page)
        page.goto(f"{server.http_url}/lobby.html")
        page.wait_for_selector(f'[data-session-id="{first["session_id"]}"]', timeout=10_000)
        assert page.query_selector(f'[data-session-id="{hidden["session_id"]}"]') is None
        # A game created after the page loaded shows up by itself.
        second = create_session(server, width=7, height=7)
        card = page.wait_for_selector(f'[data-session-id="{second["session_id"]}"]', timeout=10_000)
        href = card.query_selector("a").get_attribute("href")
        assert href == f"/watch.html?session={second['session_id']}"
        assert errors.uncaught() == []


def test_second_tab_takes_over_and_the_first_can_take_back(server, launch):
    session = create_session(server, width=5, height=5)
    url = f"{server.http_url}/#session={session['session_id']}&token={session['player_token']}"
    with launch() as browser:
        context = browser.new_context(viewport=VIEWPORT)
        first, second = context.new_page(), context.new_page()
        first.goto(url)
        first.wait_for_selector('#conn[data-state="open"]', timeout=15_000)
        second.goto(url)
        second.wait_for_selector('#conn[data-state="open"]', timeout=15_000)

        # The server closes the older socket (4000 "replaced"): the first tab says so and does not fight back.
        banner = first.wait_for_selector('#banner[data-code="replaced"]', timeout=10_000)
        assert "another tab" in banner.text_content()
        first.wait_for_timeout(1500)
        assert second.get_attribute("#conn", "data-state") == "open"

        # "Play here" takes the game back; the other tab is now the one told.
        first.click('#banner button:has-text("Play here")')
        first.wait_for_selector('#conn[data-state="open"]', timeout=10_000)
        second.wait_for_selector('#banner[data-code="replaced"]', timeout=10_000)
