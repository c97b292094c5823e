"""The MLOps loop's pure parts: the undo rule, the feedback store, drift statistics, retrain's gate."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from maze import Direction, Game, GameConfig, solve
from model.drift import Reference, compare, feature_names, reference_stats
from model.features import N_FEATURES
from model.feedback import FeedbackEvent, FeedbackStore, fingerprint
from model.retrain import Gate, champion_candidate, held_out, parse_param
from model.splits import Augmentation
from model.train import augmentation_of
from stream.protocol import ConsentMessage, ProtocolError, UndoMessage, parse_client_message


# ----------------------------------------------------------------------------------------- undo rule
def _game() -> tuple[Game, Direction]:
    game = Game.new(GameConfig(width=7, height=7), seed=4, now=0.0)
    return game, solve(game.maze, game.player)[0]


def test_undo_takes_back_only_the_last_recent_gesture_move():
    game, first = _game()
    start = game.player
    game.move(first, 1.0, "gesture")
    assert game.moves == 1
    undone = game.undo(now=2.0, window_s=4.0)
    assert undone is not None and undone.direction is first and undone.ok
    assert (game.player, game.moves) == (start, 0)
    assert game.undo(now=2.0, window_s=4.0) is None  # only once

    game.move(first, 3.0, "keyboard")
    assert game.undo(now=3.1, window_s=4.0) is None  # keyboard moves are deliberate
    game.move(first.opposite, 4.0, "gesture")
    assert game.undo(now=8.5, window_s=4.0) is None  # too late
    assert game.player == start


def test_undo_of_a_wall_bump_moves_nothing_and_newer_moves_close_the_slot():
    game, first = _game()
    blocked = next(d for d in Direction if not game.maze.can_move(game.player, d))
    game.move(blocked, 1.0, "gesture")
    assert game.undo(1.5, 4.0).ok is False and game.moves == 0
    game.move(first, 2.0, "gesture")
    game.move(first.opposite, 2.5, "keyboard")
    assert game.undo(2.6, 4.0) is None
    game.move(first, 3.0, "gesture")
    game.restart(3.1)
    assert game.undo(3.2, 4.0) is None


def test_a_winning_move_stands_and_the_slot_is_not_serialised():
    game = Game.new(GameConfig(width=5, height=5), seed=2, now=0.0)
    for i, d in enumerate(solve(game.maze, game.player)):
        game.move(d, float(i), "gesture")
    assert game.won and game.undo(game.won_at, 4.0) is None
    game, first = _game()
    game.move(first, 1.0, "gesture")
    assert Game.from_dict(game.to_dict(1.0)) == game and "last_move" not in game.to_dict(1.0)


def test_undo_and_consent_messages_parse_strictly():
    assert parse_client_message('{"type":"undo"}', 4096) == UndoMessage(None)
    assert parse_client_message('{"type":"undo","label":"peace"}', 4096) == UndoMessage("peace")
    assert parse_client_message('{"type":"consent","feedback":true}', 4096) == ConsentMessage(True)
    for bad in ('{"type":"undo","label":""}', '{"type":"undo","label":"a b"}', '{"type":"consent"}',
                '{"type":"consent","feedback":1}', '{"type":"undo","label":"' + "x" * 41 + '"}'):
        with pytest.raises(ProtocolError) as err:
            parse_client_message(bad, 4096)
        assert err.value.code == "bad_field"


# ------------------------------------------------------------------------------------ feedback store
def _event(label: str | None, n: int = 3, seed: int = 0) -> FeedbackEvent:
    rng = np.random.default_rng(seed)
    return FeedbackEvent("four", 0.9, label, "left", [rng.normal(size=(21, 2)) for _ in range(n)])


def test_feedback_store_round_trip_bounds_and_fingerprint(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'fb.db'}"
    store = FeedbackStore(url, max_events=3)
    ids = [store.add(_event("three" if i % 2 else None, seed=i)) for i in range(5)]
    assert store.count() == 3  # the oldest two were pruned
    events = store.events()
    assert [e.id for e in events] == ids[2:]
    assert [e.id for e in store.events(labelled_only=True)] == [ids[3]]
    assert events[0].xy.shape == (3, 21, 2)
    np.testing.assert_allclose(events[0].xy, np.round(np.stack(_event(None, seed=2).frames), 6))
    with pytest.raises(ValueError):
        store.add(_event("x", n=0))
    fp = fingerprint(events)
    assert fp["events"] == 3 and fp["frames"] == 9 and fp["ids"] == [[ids[2], ids[4]]]
    assert fp["per_label"] == {"None": 2, "three": 1}
    assert fingerprint(events[:2])["sha256"] != fp["sha256"]
    store.close()
    assert FeedbackStore(url).count() == 3  # persisted


# ---------------------------------------------------------------------------------------------- drift
@pytest.fixture(scope="module")
def reference() -> tuple[Reference, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, N_FEATURES))
    y = np.repeat(["a", "b", "c"], 400)
    X = centres[np.searchsorted(["a", "b", "c"], y)] + 0.3 * rng.normal(size=(len(y), N_FEATURES))
    return Reference.from_dict(reference_stats(X, y)), centres, rng.normal(size=(600, N_FEATURES))


def _live(centres, noise, labels, shift=0.0):
    idx = np.searchsorted(["a", "b", "c"], labels)
    return centres[idx] + 0.3 * noise[: len(labels)] + shift


def test_drift_is_low_for_training_like_rows_even_of_one_class_and_high_for_shifted(reference):
    ref, centres, noise = reference
    bright = np.full(200, 140.0)
    sharp = np.full(200, 400.0)
    one_class = ["a"] * 200  # one gesture held: label shift, not drift
    same = compare(ref, _live(centres, noise, one_class), one_class, bright, sharp)
    shifted = compare(ref, _live(centres, noise, one_class, shift=1.0), one_class, bright, sharp)
    assert same.features_compared and same.out_of_range < 0.03
    assert np.mean(same.psi) < 0.2 and np.max(same.ks) < 0.2
    assert shifted.out_of_range > 0.5 and np.mean(shifted.psi) > 5 * np.mean(same.psi)
    assert np.mean(shifted.ks) > 0.5
    assert set(same.summary()) >= {"features_psi_mean", "features_ks_max", "out_of_range", "brightness_psi"}
    assert len(feature_names()) == N_FEATURES == len(set(feature_names()))


def test_input_quality_drift_and_small_windows(reference):
    ref, centres, noise = reference
    labels = ["b"] * 100
    X = _live(centres, noise, labels)
    # Spread like the shipped reference frames (model/input_quality_reference.json) vs much darker.
    ok = compare(ref, X, labels, np.linspace(126, 166, 100), np.linspace(160, 690, 100))
    dark = compare(ref, X, labels, np.linspace(20, 50, 100), np.linspace(160, 690, 100))
    assert ok.brightness_psi < 0.5 < 3 < dark.brightness_psi
    small = compare(ref, X[:10], labels[:10], np.full(10, 140.0), np.full(10, 400.0), min_hands=50)
    assert not small.features_compared and small.summary() == {}
    unknown = compare(ref, X, ["zzz"] * 100, np.full(100, 140.0), np.full(100, 400.0))
    assert unknown.hands == 0 and not unknown.features_compared


# -------------------------------------------------------------------------------------------- retrain
def test_champion_configuration_is_read_back_from_run_params():
    params = {"family": "svm_rbf", "C": "100", "gamma": "scale", "train_rows": "5000",
              "selected_by": "val_f1_macro", "mirrored_training_rows": "True", "ood_quantile": "0.99",
              "rotated_copies": "2", "max_rotation_degrees": "10.0"}
    cand = champion_candidate(params)
    assert (cand.family, cand.params) == ("svm_rbf", {"C": 100, "gamma": "scale"})
    logged = Augmentation.from_params(params)
    assert logged == Augmentation(rotated_copies=2, max_degrees=10.0)
    # retrain follows the champion's augmentation unless told otherwise
    assert augmentation_of(argparse.Namespace(rotated_copies=None, max_rotation=None), logged) == logged
    assert augmentation_of(argparse.Namespace(rotated_copies=0, max_rotation=None), logged) == \
        Augmentation(rotated_copies=0, max_degrees=10.0)
    with pytest.raises(SystemExit, match="max-rotation"):
        augmentation_of(argparse.Namespace(rotated_copies=None, max_rotation=90.0), logged)
    assert parse_param("0.05") == 0.05 and parse_param("True") is True
    share = np.mean([held_out(i, 0.3) for i in range(2000)])
    assert 0.25 < share < 0.35 and held_out(7, 0.3) == held_out(7, 0.3)


@pytest.mark.parametrize(
    ("test_f1", "drop", "fb", "passed"),
    [(0.95, 0.0, 0.9, True), (0.96, 0.02, 0.51, True), (0.94, 0.0, 0.9, False), (0.9499, 0.0, 0.9, False),
     (0.95, 0.03, 0.9, False), (0.95, 0.0, 0.5, False), (0.95, 0.0, None, False)],
)
def test_promotion_gate(test_f1, drop, fb, passed):
    """docs/decisions/0012-retrain-gate.md: test macro-F1 ties pass and any loss refuses; no class may drop
    by more than 0.02; the held-out feedback slice must be strictly better (and present, from at least two
    contributors: docs/decisions/0021-retrain-gate-across-contributors.md)."""
    gate = Gate(test_f1, 0.95, "like", drop, fb, None if fb is None else 0.5, 0.02, holdout_contributors=2)
    assert gate.passed is passed
    assert bool(gate.reasons()) is not passed


# ------------------------------------------------------------------------------------- the recorder
async def test_undone_waits_for_the_state_it_describes():
    """With durable sessions a state is delivered once stored: `undone` must not overtake it."""
    import asyncio

    from maze import GameConfig
    from stream.durability.journal import SessionJournal
    from stream.sessions.session import Session, SessionOptions

    stored = asyncio.Event()
    sent: list[str] = []

    class Backend:
        shared = False
        store_up = True

        async def save(self, session, event=None):
            await stored.wait()

        async def publish(self, session_id, event):
            raise AssertionError("a local store publishes nothing")

        async def lost(self, session):
            raise AssertionError("never lost here")

    class Conn:
        def send_state(self, snapshot):
            sent.append(f"state {snapshot.version}")

    session = Session("s", SessionOptions(7, 7, 1, "counting"), GameConfig(7, 7))
    session.publisher = SessionJournal(session, Backend())
    session.audience.spectators.add(Conn())  # type: ignore[arg-type]
    snapshot = session.publish_state()
    session.publisher.then(lambda: sent.append("undone"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert sent == []  # neither the state nor the reply before the state is stored
    stored.set()
    await session.publisher.flush()
    assert sent == [f"state {snapshot.version}", "undone"]
    session.audience.spectators.clear()
    direct = Session("d", SessionOptions(7, 7, 1, "counting"), GameConfig(7, 7))
    direct.publisher.then(lambda: sent.append("direct"))  # no store: at once
    assert sent[-1] == "direct"


async def test_feedback_writes_are_bounded_and_counted(tmp_path, monkeypatch):
    import asyncio
    import threading

    from stream.metrics import Metrics
    from stream.recognition.feedback import MAX_PENDING_WRITES, FeedbackRecorder

    metrics = Metrics(process=False)
    recorder = FeedbackRecorder(f"sqlite:///{tmp_path / 'fb.db'}", 1000, metrics)
    gate = threading.Event()
    original = FeedbackRecorder._write
    monkeypatch.setattr(FeedbackRecorder, "_write", lambda self, e: gate.wait(10) and original(self, e))
    accepted = [recorder.submit(_event("three", seed=i)) for i in range(MAX_PENDING_WRITES + 8)]
    assert accepted.count(True) == MAX_PENDING_WRITES and accepted.count(False) == 8
    gate.set()
    await recorder.close()
    for _ in range(100):  # the done-callbacks run on the loop
        text = metrics.render().decode()
        if f'gesture_maze_feedback_total{{result="stored"}} {float(MAX_PENDING_WRITES)}' in text:
            break
        await asyncio.sleep(0.01)
    assert 'gesture_maze_feedback_total{result="dropped"} 8.0' in text
    assert f'gesture_maze_feedback_total{{result="stored"}} {float(MAX_PENDING_WRITES)}' in text
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    assert store.count() == MAX_PENDING_WRITES
