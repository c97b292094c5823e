"""The player page across a server restart with the default store: same game, and it says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from maze import Point, generate_maze, solve
from stream.settings import Settings
from tests.e2e.conftest import (
    VIEWPORT,
    create_session,
    player_position,
    seed_where,
    wait_for_position,
    watch_errors,
)
from tests.e2e.netproxy import DroppingProxy
from tests.e2e.test_keyboard_play import KEYS
from tests.support.server import LiveServer

pytestmark = pytest.mark.e2e

SIZE = 5


def test_the_page_resumes_the_game_after_the_server_restarts(launch, tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    settings = Settings.from_env({}).replace(data_dir=data_dir, maze_width=SIZE, maze_height=SIZE)
    seed = seed_where(SIZE, SIZE, lambda m: len(solve(m, m.start)) >= 3)
    maze = generate_maze(SIZE, SIZE, seed)
    path = solve(maze, maze.start)
    first_server = LiveServer(settings).start()
    second_server: LiveServer | None = None
    session = create_session(first_server, seed=seed)
    proxy = DroppingProxy(first_server.port)  # the page's address stays the same across the restart
    try:
        with launch() as browser:
            page = browser.new_page(viewport=VIEWPORT)
            errors = watch_errors(page)
            page.goto(f"{proxy.http_url}/#session={session['session_id']}&token={session['player_token']}")
            page.wait_for_selector('#conn[data-state="open"]', timeout=15_000)
            page.keyboard.press(KEYS[path[0]])
            first = Point(maze.start.x + path[0].dx, maze.start.y + path[0].dy)
            wait_for_position(page, first, timeout=10_000)
            spectator = browser.new_page(viewport=VIEWPORT)
            spectator.goto(f"{proxy.http_url}/watch.html?session={session['session_id']}")
            spectator.wait_for_function(
                "() => document.getElementById('player-pill').textContent.includes('online')", timeout=15_000
            )

            first_server.stop()  # graceful: the page is told 1001 and keeps retrying
            page.wait_for_selector('#conn[data-state="retrying"]', timeout=10_000)
            # Meanwhile the spectator page does not pretend the player is still there.
            spectator.wait_for_function(
                "() => document.getElementById('player-pill').textContent.includes('connection lost')",
                timeout=10_000,
            )
            second_server = LiveServer(settings).start()  # a new process would read the same file
            proxy.target_port = second_server.port

            page.wait_for_selector('#conn[data-state="open"]', timeout=30_000)
            page.wait_for_function(
                "() => document.getElementById('conn').textContent.includes('resumed')", timeout=10_000
            )
            assert player_position(page) == (first.x, first.y)
            assert page.get_attribute("#maze", "data-moves") == "1"
            page.keyboard.press(KEYS[path[1]])
            wait_for_position(page, Point(first.x + path[1].dx, first.y + path[1].dy), timeout=10_000)
            assert page.get_attribute("#maze", "data-moves") == "2"
            assert page.get_attribute("#banner", "data-code") != "session_gone"
            spectator.wait_for_function(
                "() => document.getElementById('f-moves').textContent === '2'"
                " && document.getElementById('player-pill').textContent.includes('online')",
                timeout=15_000,
            )
            assert errors.uncaught() == []
    finally:
        proxy.close()
        first_server.stop()
        if second_server is not None:
            second_server.stop()
