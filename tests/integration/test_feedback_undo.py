"""Undo over a real play socket: the move is taken back for everyone, and the correction (landmarks of the
frames that fired it) reaches the feedback database only after the player opted in."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from maze import EAST
from model.feedback import FeedbackStore, default_feedback_url
from stream.settings import Settings
from tests.integration.test_gesture_stream import BLANK, Peer, game, stream
from tests.support.frames import jittered_frames
from tests.support.server import live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("feedback-data")
    with live_server(Settings.from_env({}).replace(data_dir=str(data_dir), drift_interval_s=0)) as running:
        yield running


@pytest.fixture(scope="module")
def photos(gestures_dir) -> dict[str, list[bytes]]:
    return {g: jittered_frames(gestures_dir / f"{g}.jpg", 6, seed=3) for g in ("peace", "three")}


def open_gesture(player: Peer) -> tuple[str, str]:
    """The counting gesture whose move is open from the start cell (peace = right, three = down)."""
    state = player.of("state")[0]
    start = state["start"]
    walls = state["maze"]["cells"][start["y"]][start["x"]]
    return ("three", "down") if walls & EAST else ("peace", "right")


async def gesture_move(player: Peer, frames: list[bytes]) -> dict:
    before = len(player.gesture_moves())
    sent_before = player.replies()
    await stream(player, [BLANK, *frames, BLANK], lockstep=True)
    await player.wait_for(lambda p: p.replies() >= sent_before + len(frames) + 2)
    await player.flush()
    assert len(player.gesture_moves()) == before + 1
    return next(m for m in reversed(player.of("state")) if m.get("last_move", {}).get("source") == "gesture")


async def undo(player: Peer, text: str) -> dict:
    count = len(player.of("undone")) + len(player.of("error"))
    await player.ws.send(text)
    await player.wait_for(lambda p: len(p.of("undone")) + len(p.of("error")) > count)
    await player.flush()
    return (player.of("undone") + player.of("error"))[-1] if player.of("undone") else player.of("error")[-1]


def stored_events(server) -> list:
    store = FeedbackStore(default_feedback_url(server.settings.data_dir))
    try:
        return store.events()
    finally:
        store.close()


async def test_undo_takes_the_move_back_and_consent_gates_storage(server, photos):
    async with game(server) as (player, spectator):
        gesture, direction = open_gesture(player)
        start = player.of("state")[0]["player"]

        # 1. No consent: the move is undone for everyone, nothing is stored.
        moved = await gesture_move(player, photos[gesture])
        assert moved["last_move"]["direction"] == direction and moved["player"] != start
        await player.ws.send('{"type":"undo","label":"fist"}')
        await player.wait_for(lambda p: bool(p.of("undone")))
        await player.flush()
        undone = player.of("undone")[-1]
        assert undone == {"type": "undone", "direction": direction, "gesture": gesture, "label": "fist",
                          "stored": False, "steps": 1, "moves": 1, "paused": False}
        state = player.of("state")[-1]
        assert state["player"] == start and state["last_move"]["source"] == "undo"
        assert state["last_move"]["direction"] != direction and state["moves"] == 0  # the way back
        await spectator.wait_for(lambda s: s.of("state")[-1]["player"] == start)
        assert stored_events(server) == []

        # Only once, and never a keyboard move.
        await player.ws.send('{"type":"undo"}')
        await player.wait_for(lambda p: bool(p.of("error")))
        assert player.of("error")[-1]["code"] == "nothing_to_undo"
        await player.ws.send(f'{{"type":"move","direction":"{direction}"}}')
        await player.ws.send('{"type":"undo","label":null}')
        await player.wait_for(lambda p: len(p.of("error")) >= 2)
        assert player.of("error")[-1]["code"] == "nothing_to_undo"
        await player.ws.send('{"type":"restart"}')
        await player.ws.send('{"type":"undo","label":"no_such_gesture"}')
        await player.wait_for(lambda p: len(p.of("error")) >= 3)
        assert player.of("error")[-1]["code"] == "bad_field"
        assert stored_events(server) == []
        # The keyboard move above paused gesture moves for GM_MANUAL_LOCKOUT_MS (issue 16's shared-control
        # rule: the last manual input wins); the server had handled it before answering the undo after it.
        await asyncio.sleep(server.settings.manual_lockout_ms / 1000)

        # 2. With consent: the landmarks of the frames that fired the move are stored with both labels.
        await player.ws.send('{"type":"consent","feedback":true}')
        await gesture_move(player, photos[gesture])
        await player.ws.send('{"type":"undo","label":"fist"}')
        await player.wait_for(lambda p: len(p.of("undone")) == 2)
        assert player.of("undone")[-1]["stored"] is True
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            for _ in range(100):
                metrics = (await http.get("/metrics")).text
                if 'gesture_maze_feedback_total{result="stored"} 1.0' in metrics:
                    break
        events = stored_events(server)
        assert len(events) == 1
        event = events[0]
        assert (event.predicted, event.label, event.origin) == (gesture, "fist", "play")
        assert 1 <= len(event.xy) <= server.settings.feedback_frames and event.xy.shape[1:] == (21, 2)
        assert f'gesture_maze_undos_total{{gesture="{gesture}"}} 2.0' in metrics
        assert f'gesture_maze_gesture_moves_total{{gesture="{gesture}"}} 2.0' in metrics

        # 3. Opting out again: nothing more is stored.
        await player.ws.send('{"type":"consent","feedback":false}')
        await gesture_move(player, photos[gesture])
        await player.ws.send('{"type":"undo","label":"fist"}')
        await player.wait_for(lambda p: len(p.of("undone")) == 3)
        assert player.of("undone")[-1]["stored"] is False
        assert len(stored_events(server)) == 1


async def test_consent_and_undo_messages_are_validated(server):
    async with game(server) as (player, _spectator):
        for text in ('{"type":"consent","feedback":"yes"}', '{"type":"consent"}',
                     '{"type":"undo","label":"Peace!"}', '{"type":"undo","label":3}',
                     '{"type":"undo","label":null,"x":1}'):
            count = len(player.of("error"))
            await player.ws.send(text)
            await player.wait_for(lambda p, c=count: len(p.of("error")) > c)
            assert player.of("error")[-1]["code"] == "bad_field", text


async def test_undo_takes_back_the_whole_hold_and_the_held_gesture_stays_paused(server, gestures_dir):
    """A held gesture moves again and again; undo takes back every move it made (the player is back
    where the gesture began) and the still-held gesture moves nothing until the hand changes."""
    async with game(server) as (player, _spectator):
        gesture, _ = open_gesture(player)
        held = jittered_frames(gestures_dir / f"{gesture}.jpg", 45, seed=8)  # 3 s: repeats fire
        start = player.of("state")[0]["player"]
        await stream(player, [BLANK, *held], lockstep=True)
        await player.wait_for(lambda p: p.replies() >= len(held) + 1)
        await player.flush()
        fired = [m for m in player.of("state") if m.get("last_move", {}).get("source") == "gesture"]
        assert len(fired) >= 2, fired  # the hold repeated its move (or bumped the wall after it)

        undone = await undo(player, '{"type":"undo"}')
        assert undone["type"] == "undone" and undone["moves"] == len(fired) and undone["steps"] >= 1
        await player.wait_for(lambda p: p.of("state")[-1]["player"] == start)
        assert player.of("state")[-1]["moves"] == 0

        # Still the same hand: no move, however long it is held.
        before = len(player.gesture_moves())
        more = jittered_frames(gestures_dir / f"{gesture}.jpg", 20, seed=9)
        sent = player.replies()
        await stream(player, more, lockstep=True)
        await player.wait_for(lambda p: p.replies() >= sent + len(more))
        await player.flush()
        assert len(player.gesture_moves()) == before and player.of("state")[-1]["player"] == start

        # The hand changes (it leaves the picture), comes back: it moves again.
        sent = player.replies()
        await stream(player, [BLANK, BLANK, *more], lockstep=True)
        await player.wait_for(lambda p: p.replies() >= sent + len(more) + 2)
        await player.flush()
        assert len(player.gesture_moves()) > before
