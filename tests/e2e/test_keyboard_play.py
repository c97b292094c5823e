"""Keyboard only: start a game, bump a wall, resume after a reload, solve the level, get the next one."""

from __future__ import annotations

import pytest

from maze import Direction, Point, generate_maze, solve
from tests.e2e.conftest import VIEWPORT, player_position, seed_where, wait_for_position, watch_errors

pytestmark = pytest.mark.e2e

SIZE = 5
KEYS = {
    Direction.UP: "ArrowUp",
    Direction.DOWN: "ArrowDown",
    Direction.LEFT: "ArrowLeft",
    Direction.RIGHT: "ArrowRight",
}


def test_keyboard_only_game(server, launch):
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

        # A wall: the server answers, nothing moves, no move is counted.
        blocked = next(d for d in Direction if not maze.can_move(maze.start, d))
        version = int(page.get_attribute("#maze", "data-version"))
        page.keyboard.press(KEYS[blocked])
        page.wait_for_function(
            "v => Number(document.getElementById('maze').dataset.version) > v", arg=version, timeout=10_000
        )
        assert player_position(page) == (maze.start.x, maze.start.y)
        assert page.get_attribute("#maze", "data-moves") == "0"
        assert "can't go" in page.text_content("#announcer")

        point = maze.start
        for i, direction in enumerate(path):
            if i == 2:
                # A reload (or a dropped network) resumes the same game from sessionStorage.
                page.reload()
                wait_for_position(page, point, timeout=15_000)
                assert page.get_attribute("#maze", "data-moves") == "2"
                assert page.is_hidden("#start-card")
            page.keyboard.press(KEYS[direction])
            point = Point(point.x + direction.dx, point.y + direction.dy)
            wait_for_position(page, point, timeout=10_000)
            assert page.get_attribute("#maze", "data-moves") == str(i + 1)
            if i < len(path) - 1:  # the winning move is announced as the win instead
                assert f"Moved {direction.value}" in page.text_content("#announcer")

        # Solved: the win card, then the server's next, bigger level.
        page.wait_for_selector("#win-card:not([hidden])", timeout=10_000)
        page.wait_for_function("document.getElementById('maze').dataset.level === '2'", timeout=15_000)
        page.wait_for_selector("#win-card[hidden]", state="attached", timeout=10_000)
        assert page.get_attribute("#maze", "data-moves") == "0"

        # The scheme picker switches the server's control scheme (the state says so) and the legend.
        assert page.get_attribute("#maze", "data-scheme") == "counting"
        page.check('input[name="scheme"][value="pointing"]')
        page.wait_for_selector('#maze[data-scheme="pointing"]', timeout=10_000)
        assert "point up" in page.text_content("#legend")
        assert errors.uncaught() == []
