"""A fake webcam holding up two fingers steers the maze right; a spectator page sees the same position."""

from __future__ import annotations

import pytest

from maze import Direction, Point, generate_maze
from tests.e2e.conftest import (
    VIEWPORT,
    create_session,
    player_position,
    run_until_wall,
    seed_where,
    wait_for_position,
    watch_errors,
)

pytestmark = pytest.mark.e2e

SIZE = 7


def test_gesture_moves_player_and_spectator_sees_it(server, launch, peace_video, artifacts):
    # Counting scheme: peace (two fingers) = right. Pick a maze whose start has an open passage right.
    seed = seed_where(SIZE, SIZE, lambda m: m.can_move(m.start, Direction.RIGHT))
    maze = generate_maze(SIZE, SIZE, seed)
    expected = run_until_wall(maze, maze.start, Direction.RIGHT)
    assert expected != maze.start
    session = create_session(server, width=SIZE, height=SIZE, seed=seed, scheme="counting")
    sid, token = session["session_id"], session["player_token"]

    with launch(video=peace_video) as browser:
        context = browser.new_context(viewport=VIEWPORT)
        player = context.new_page()
        errors = watch_errors(player)
        player.goto(f"{server.http_url}/#session={sid}&token={token}")

        # The game resumes from the URL, and the token leaves the address bar.
        player.wait_for_function("document.getElementById('maze').dataset.version !== ''", timeout=15_000)
        assert player_position(player) == (maze.start.x, maze.start.y)
        assert "token" not in player.url

        # The camera was already allowed (fake UI), so it starts without the explanation card.
        player.wait_for_selector('#camera-state[data-on="true"]', timeout=15_000)

        # Frames stream and the server answers each one with a `frame` message.
        player.wait_for_function(
            "Number(document.getElementById('stats').dataset.replies) >= 3", timeout=30_000
        )
        # fps sent shows "—" until the frames sent span a second (no spike from the first two frames).
        player.wait_for_function(
            "Number(document.getElementById('stat-fps').textContent) > 0", timeout=30_000
        )

        # The photo's gesture is recognised and shown, with its command.
        player.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=30_000)
        player.wait_for_selector('#command[data-command="right"]', timeout=30_000)

        # Holding the gesture moves right (repeating) until a wall stops it; never up/down/left.
        player.wait_for_function(
            "x => Number(document.getElementById('maze').dataset.playerX) > x",
            arg=maze.start.x,
            timeout=30_000,
        )
        assert player_position(player)[1] == maze.start.y
        wait_for_position(player, expected)
        assert int(player.get_attribute("#maze", "data-moves")) == expected.x - maze.start.x

        # A spectator sees the same position, the live gesture, and is counted.
        spectator = context.new_page()
        spectator_errors = watch_errors(spectator)
        spectator.goto(f"{server.http_url}/watch.html?session={sid}")
        wait_for_position(spectator, expected, timeout=15_000)
        spectator.wait_for_selector('#gesture-name[data-gesture="peace"]', timeout=15_000)
        player.wait_for_function(
            "document.getElementById('hud-watchers').textContent === '1'", timeout=15_000
        )
        assert spectator.text_content("#f-watchers") == "1"

        # The share link on the player page points at this spectator view.
        assert player.input_value("#share-link").endswith(f"/watch.html?session={sid}")

        player.wait_for_timeout(400)  # let the last move's animation settle for the picture
        player.screenshot(path=str(artifacts / "player.png"))
        spectator.screenshot(path=str(artifacts / "spectator.png"))

        lobby = context.new_page()
        lobby.goto(f"{server.http_url}/lobby.html")
        lobby.wait_for_selector(f'[data-session-id="{sid}"]', timeout=10_000)
        top = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": 380}  # the rest is empty page
        lobby.screenshot(path=str(artifacts / "lobby.png"), clip=top)

        assert errors.uncaught() == []
        assert spectator_errors.uncaught() == []
        assert Point(*player_position(spectator)) == expected
