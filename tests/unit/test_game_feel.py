"""Game-feel rules: the neutral-hand level change, the gesture latch, shared control, names, lobby order."""

from __future__ import annotations

import asyncio

import pytest

from maze import Direction, Point, solve
from stream.protocol import GestureNotice, ProtocolError, ShareHandMessage, parse_client_message
from stream.sessions.game_feel import MAX_NAME_CHARS, FeelConfig, clean_name, friendly_name
from stream.sessions.publisher import DirectPublisher
from stream.sessions.registry import Session, SessionRegistry
from stream.settings import Settings
from stream.web.api import BadRequest, parse_create_body
from tests.unit.test_sessions import Clock, config_for, connect, options, settle


def feel_session(clock: Clock, win_pause_s: float = 0.0) -> Session:
    opts = options()
    return Session(
        "s1", opts, config_for(opts), win_pause_s=win_pause_s, clock=clock,
        feel=FeelConfig(manual_lockout_s=1.0, win_card_min_s=1.0, neutral_hold_s=0.3),
    )  # fmt: skip


def neutral_hand(session: Session, clock: Clock, seconds: float = 0.4) -> None:
    """The camera shows no steering gesture for `seconds` (frames every 0.1 s)."""
    for _ in range(round(seconds / 0.1) + 1):
        session.observe_hand(None)
        clock.now += 0.1


def win(session: Session) -> None:
    for direction in solve(session.game.maze, session.game.player):
        session.move(direction, "keyboard")
    assert not session.playing


async def test_a_held_gesture_never_moves_the_ball_in_the_next_level() -> None:
    clock = Clock()
    session = feel_session(clock)
    connect(session, "player")
    win(session)
    clock.now += 5
    session.observe_hand(Direction.RIGHT)  # still holding the last gesture: the win card stays
    await settle()
    assert session.game.level == 1 and not session.playing
    assert session.next_level()  # a tap / key
    open_step = next(d for d in Direction if session.game.maze.can_move(session.game.player, d))
    assert session.gesture_move(open_step) is None  # latched: the held gesture does nothing
    assert session.game.player == Point(0, 0) and session.game.moves == 0
    session.observe_hand(None)  # one frame without a hand (a blur) is not a lowered hand
    assert session.gesture_move(open_step) is None
    neutral_hand(session, clock)  # the hand goes neutral (or out of view) ...
    outcome = session.gesture_move(open_step)  # ... and gestures steer again
    assert outcome is not None and outcome.ok and session.game.moves == 1


async def test_a_neutral_hand_starts_the_next_level_after_the_win_card_showed() -> None:
    clock = Clock()
    session = feel_session(clock)
    _, sock, _ = connect(session, "player")
    win(session)
    neutral_hand(session, clock, 0.5)  # too early: the card must be seen
    assert session.game.level == 1
    session.observe_hand(Direction.RIGHT)
    clock.now += 0.3
    session.observe_hand(None)  # neutral, but only for one frame
    assert session.game.level == 1
    neutral_hand(session, clock)
    assert session.game.level == 2 and session.playing and not session.gestures_latched
    await settle()
    assert sock.sent[-1]["level"] == 2 and "maze" in sock.sent[-1]


async def test_no_level_change_while_the_store_cannot_take_it() -> None:
    class DownPublisher(DirectPublisher):
        paused = True  # the store is unreachable: every change is refused, none is lost

    clock = Clock()
    session = feel_session(clock)
    connect(session, "player")
    win(session)
    clock.now += 2
    session.publisher = DownPublisher(session.audience)
    neutral_hand(session, clock)
    assert not session.next_level()
    assert session.game.level == 1 and not session.playing
    session.publisher = DirectPublisher(session.audience)  # back
    neutral_hand(session, clock)
    assert session.game.level == 2 and session.playing


async def test_timer_advance_only_for_players_without_a_camera() -> None:
    clock = Clock()
    streaming = feel_session(clock, win_pause_s=0.01)
    streaming.observe_hand(Direction.UP)  # a camera is streaming
    win(streaming)
    keyboard_only = feel_session(clock, win_pause_s=0.01)
    win(keyboard_only)
    await asyncio.sleep(0.05)
    assert keyboard_only.game.level == 2
    assert streaming.game.level == 1  # waits for a neutral hand or next_level


def test_manual_moves_pause_gestures_for_the_lockout() -> None:
    clock = Clock()
    session = feel_session(clock)
    maze = session.game.maze
    path = solve(maze, maze.start)
    session.move(path[0], "keyboard")
    assert session.gesture_move(path[1]) is None  # the last manual input wins for a moment
    clock.now += 1.01
    outcome = session.gesture_move(path[1])
    assert outcome is not None and outcome.ok and session.game.moves == 2


def test_clock_waits_for_the_first_move() -> None:
    clock = Clock()
    session = feel_session(clock)
    clock.now += 30  # finding the camera, reading the legend, a countdown
    assert session.latest_state().body["elapsed_s"] == 0.0
    session.move(solve(session.game.maze, session.game.maze.start)[0], "keyboard")
    clock.now += 2
    assert session._snapshot().body["elapsed_s"] == 2.0


def test_names_and_hand_sharing_in_state_and_summary() -> None:
    session = feel_session(Clock())
    assert len(session.name.split()) == 2  # a friendly generated name
    body = session.latest_state().body
    assert body["name"] == session.name and body["share_hand"] is False
    session.set_share_hand(True)
    assert session.latest_state().body["share_hand"] is True
    assert session.summary()["name"] == session.name
    named = Session("s2", options(name="Room 4"), config_for(options()))
    assert named.name == "Room 4"


def test_name_cleaning() -> None:
    assert clean_name("  Team\n  Blue\x00 ") == "Team Blue"
    assert clean_name("   ") is None and clean_name(None) is None
    with pytest.raises(ValueError):
        clean_name("x" * (MAX_NAME_CHARS + 1))
    with pytest.raises(ValueError):
        clean_name(5)
    assert friendly_name() != "" and friendly_name().istitle()
    settings = Settings.from_env({})
    assert parse_create_body(b'{"name": " Blue  Team ", "share_hand": true}', settings).name == "Blue Team"
    with pytest.raises(BadRequest):
        parse_create_body(b'{"share_hand": "yes"}', settings)


def test_share_hand_message_and_notice() -> None:
    assert parse_client_message('{"type":"share_hand","enabled":true}', 4096) == ShareHandMessage(True)
    with pytest.raises(ProtocolError):
        parse_client_message('{"type":"share_hand","enabled":1}', 4096)
    points = [[0.5, 0.5]] * 21
    assert "landmarks" not in GestureNotice("peace", 0.9, True, False, points).to_dict()
    assert GestureNotice("peace", 0.9, True, True, points).to_dict()["landmarks"] == points
    assert GestureNotice(None, 0.0, False, True, None).to_dict()["landmarks"] is None


async def test_lobby_lists_live_games_before_away_ones() -> None:
    clock = Clock()
    registry = SessionRegistry(max_sessions=5, config_for=config_for, clock=clock)
    away_new = registry.create(options())
    live_old = registry.create(options())
    live_old.created_at -= 100
    connect(live_old, "player")
    away_new.created_at += 1
    assert [s.id for s in registry.public()] == [live_old.id, away_new.id]
    await settle()


async def test_the_clock_stands_still_while_the_player_is_away() -> None:
    clock = Clock()
    session = feel_session(clock)
    conn, _, _ = connect(session, "player")
    session.move(solve(session.game.maze, session.game.maze.start)[0], "keyboard")
    clock.now += 3
    session.detach_player(conn)
    clock.now += 60  # an outage
    connect(session, "player")
    clock.now += 1
    assert session._snapshot().body["elapsed_s"] == 4.0
    await settle()
