"""Keyboard only: start a game, bump a wall, resume after a reload and after a network drop, solve a level."""

from __future__ import annotations

import pytest

from maze import Direction, Point, generate_maze, solve
from tests.e2e.conftest import (
    VIEWPORT,
    create_session,
    player_position,
    seed_where,
    wait_for_position,
    watch_errors,
)
from tests.e2e.netproxy import DroppingProxy

pytestmark = pytest.mark.e2e

SIZE = 5
KEYS = {
    Direction.UP: "ArrowUp",
    Direction.DOWN: "ArrowDown",
    Direction.LEFT: "ArrowLeft",
    Direction.RIGHT: "ArrowRight",
}


def test_keyboard_only_game(server, launch, artifacts):
    # Chromium's own fake camera shows a test pattern with no hand: only the keyboard steers.
    seed = seed_where(SIZE, SIZE, lambda m: len(solve(m, m.start)) >= 4)
    maze = generate_maze(SIZE, SIZE, seed)
    path = solve(maze, maze.start)

    with launch() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        errors = watch_errors(page)
        page.goto(f"{server.http_url}/?seed={seed}")

        # Start the game from the keyboard: choose the size, then Enter on the button.
        page.focus("#start-size")
        page.select_option("#start-size", str(SIZE))
        page.focus("#start-button")
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('maze').dataset.version !== ''", timeout=15_000)
        assert player_position(page) == (maze.start.x, maze.start.y)
        assert page.is_hidden("#start-card")
        # Starting a game turns the (fake) camera on, which announces itself: wait for it, so it cannot
        # overwrite the wall announcement checked next.
        page.wait_for_selector('#camera-state[data-on="true"]', timeout=15_000)

        # A wall: the server answers, nothing moves, no move is counted.
        blocked = next(d for d in Direction if not maze.can_move(maze.start, d))
        page.keyboard.press(KEYS[blocked])
        page.wait_for_function(
            "d => document.getElementById('announcer').textContent.includes(`can't go ${d}`)",
            arg=blocked.value,
            timeout=10_000,
        )
        assert player_position(page) == (maze.start.x, maze.start.y)
        assert page.get_attribute("#maze", "data-moves") == "0"

        point = maze.start
        for i, direction in enumerate(path):
            if i == 2:
                # A reload (or a dropped network) resumes the same game from sessionStorage.
                page.reload()
                wait_for_position(page, point, timeout=15_000)
                # The camera, remembered from before the reload, comes back on and announces it: let
                # that happen first so it cannot overwrite the move announcements checked below.
                page.wait_for_selector('#camera-state[data-on="true"]', timeout=15_000)
                assert page.get_attribute("#maze", "data-moves") == "2"
                assert page.is_hidden("#start-card")
            page.keyboard.press(KEYS[direction])
            point = Point(point.x + direction.dx, point.y + direction.dy)
            wait_for_position(page, point, timeout=10_000)
            assert page.get_attribute("#maze", "data-moves") == str(i + 1)
            if i < len(path) - 1:  # the winning move is announced as the win instead
                assert f"Moved {direction.value}" in page.text_content("#announcer")

        # Solved: the win card, then the server's next, bigger level: Chromium's test-pattern camera
        # shows no hand, which is a neutral hand (docs/decisions/0013-game-feel.md).
        page.wait_for_selector("#win-card:not([hidden])", timeout=10_000)
        page.screenshot(path=str(artifacts / "win.png"))
        page.wait_for_function("document.getElementById('maze').dataset.level === '2'", timeout=15_000)
        page.wait_for_selector("#win-card[hidden]", state="attached", timeout=10_000)
        assert page.get_attribute("#maze", "data-moves") == "0"

        # The scheme picker switches the server's control scheme (the state says so) and the legend.
        assert page.get_attribute("#maze", "data-scheme") == "counting"
        page.check('input[name="scheme"][value="pointing"]')
        page.wait_for_selector('#maze[data-scheme="pointing"]', timeout=10_000)
        assert "point up" in page.text_content("#legend")
        assert errors.uncaught() == []


def test_network_drop_reconnects_and_resumes(server, launch):
    seed = seed_where(SIZE, SIZE, lambda m: len(solve(m, m.start)) >= 3)
    maze = generate_maze(SIZE, SIZE, seed)
    path = solve(maze, maze.start)
    session = create_session(server, width=SIZE, height=SIZE, seed=seed)
    proxy = DroppingProxy(server.port)
    try:
        with launch() as browser:
            page = browser.new_page(viewport=VIEWPORT)
            errors = watch_errors(page)
            page.goto(f"{proxy.http_url}/#session={session['session_id']}&token={session['player_token']}")
            page.wait_for_selector('#conn[data-state="open"]', timeout=15_000)
            page.keyboard.press(KEYS[path[0]])
            first = Point(maze.start.x + path[0].dx, maze.start.y + path[0].dy)
            wait_for_position(page, first, timeout=10_000)

            proxy.drop()
            page.wait_for_selector('#conn[data-state="retrying"]', timeout=10_000)
            page.wait_for_selector('#banner:not([hidden])', timeout=10_000)
            assert page.get_attribute("#banner", "data-code") in {"reconnecting", "unreachable"}
            page.wait_for_timeout(2000)  # a few failed attempts while the network is down
            proxy.restore()

            # Back by itself (backoff is capped, so within ~10 s), same game, same place; play goes on.
            page.wait_for_selector('#conn[data-state="open"]', timeout=20_000)
            page.wait_for_selector("#banner[hidden]", state="attached", timeout=5_000)
            assert player_position(page) == (first.x, first.y)
            page.keyboard.press(KEYS[path[1]])
            wait_for_position(page, Point(first.x + path[1].dx, first.y + path[1].dy), timeout=10_000)
            assert page.get_attribute("#maze", "data-moves") == "2"
            assert errors.uncaught() == []
    finally:
        proxy.close()
