"""Per-player calibration over a real WebSocket: recorded frames adapt recognition for that player only,
bad requests are refused, and donated landmarks are written when the session ends (never otherwise)."""

from __future__ import annotations

import csv
import json

from stream.settings import Settings
from tests.integration.test_gesture_stream import Peer, game, stream
from tests.support.frames import jittered_frames
from tests.support.server import live_server


async def _status(player: Peer, message: dict) -> dict:
    before = len(player.of("calibration"))
    await player.ws.send(json.dumps(message))
    await player.wait_for(lambda p: len(p.of("calibration")) > before)
    return player.of("calibration")[-1]


async def _gestures(player: Peer, frames: list[bytes]) -> list[str | None]:
    start = len(player.of("frame"))
    await stream(player, frames, lockstep=True)
    await player.wait_for(lambda p: len(p.of("frame")) >= start + len(frames))
    return [m["gesture"] for m in player.of("frame")[start:]]


async def test_a_players_relaxed_hand_becomes_no_gesture_and_donation_is_written(gestures_dir, tmp_path):
    palm = jittered_frames(gestures_dir / "palm.jpg", 24, seed=3)
    with live_server(Settings.from_env({}).replace(data_dir=str(tmp_path))) as server:
        async with game(server) as (player, _spectator):
            before = await _gestures(player, palm[:6])
            assert before[-3:] == ["palm"] * 3  # the global model's answer

            # Bad requests get an error and change nothing.
            await player.ws.send(json.dumps({"type": "calibrate", "gesture": "not_a_class"}))
            await player.wait_for(lambda p: any(e["code"] == "bad_field" for e in p.of("error")))
            await player.ws.send(json.dumps({"type": "calibrate", "gesture": "Palm!"}))
            await player.wait_for(lambda p: sum(e["code"] == "bad_field" for e in p.of("error")) >= 2)

            # This player's open hand is their resting hand: record it as "relaxed".
            status = await _status(player, {"type": "calibrate", "gesture": "relaxed"})
            assert status == {"type": "calibration", "recording": "relaxed", "samples": {}, "donate": False}
            await _gestures(player, palm[6:16])
            status = await _status(player, {"type": "calibrate", "gesture": None})
            assert status["recording"] is None
            assert 5 <= status["samples"]["relaxed"] <= 10

            # From now on their palm is no gesture for them, and never a move.
            after = await _gestures(player, palm[16:22])
            assert after[-3:] == ["no_gesture"] * 3
            assert all(m["command"] is None for m in player.of("frame")[-3:])

            status = await _status(player, {"type": "donate", "donate": True})
            assert status["donate"] is True
            # Another player's recognition is not affected.
            async with game(server) as (other, _):
                assert (await _gestures(other, palm[:6]))[-3:] == ["palm"] * 3
    donated = list((tmp_path / "donations").glob("*.csv"))
    assert len(donated) == 1  # only the player who opted in
    rows = list(csv.DictReader(donated[0].open()))
    assert len(rows) == status["samples"]["relaxed"]
    assert {r["label"] for r in rows} == {"no_gesture"}


async def test_reset_forgets_and_nothing_is_kept_without_consent(gestures_dir, tmp_path):
    palm = jittered_frames(gestures_dir / "palm.jpg", 16, seed=4)
    like = jittered_frames(gestures_dir / "like.jpg", 8, seed=4)
    with live_server(Settings.from_env({}).replace(data_dir=str(tmp_path))) as server:
        async with game(server) as (player, _spectator):
            await _gestures(player, palm[:2])
            # Showing `like` (= up) because the calibration asks for it is not a move.
            await _status(player, {"type": "calibrate", "gesture": "like"})
            assert "like" in await _gestures(player, like)
            assert all(m["command"] is None for m in player.of("frame")) and not player.gesture_moves()
            await _status(player, {"type": "calibrate", "gesture": "relaxed"})
            await _gestures(player, palm[2:10])
            status = await _status(player, {"type": "calibration_reset"})
            assert status["samples"] == {} and status["recording"] is None
            assert (await _gestures(player, palm[10:16]))[-3:] == ["palm"] * 3
    assert not (tmp_path / "donations").exists()
