"""Feedback, retraining and donations are fair between contributors (issue 26, items 6-8; docs/security.md
"Feedback, retraining and donations"): one source cannot fill the feedback table, evict others' rows,
carry the retrain gate, or fill the donation folder."""

from __future__ import annotations

import asyncio
import sqlite3

import numpy as np
import pytest

from model.feedback import FeedbackEvent, FeedbackRefused, FeedbackStore, StoredFeedback
from model.personal import PlayerProfile
from model.retrain import (
    Gate,
    cap_contributors,
    contributor_accuracy,
    evaluate,
    split_by_contributor,
    worst_flips,
)
from stream.edge.limits import KeyedRateLimiter
from stream.metrics import Metrics
from stream.recognition.feedback import ContributorIds, FeedbackRecorder
from stream.sessions.donations import DonationBox, donation_rows


def _event(who: str = "", key: str = "", label: str | None = "three", seed: int = 0) -> FeedbackEvent:
    rng = np.random.default_rng(seed)
    return FeedbackEvent("four", 0.9, label, "left", [rng.normal(size=(21, 2))], session_key=key,
                         contributor=who)


def _url(tmp_path, name: str = "fb.db") -> str:
    return f"sqlite:///{tmp_path / name}"


# ------------------------------------------------------------------------------ item 6: the store
@pytest.mark.parametrize("flood_order", ["after", "before", "interleaved"])
def test_a_full_table_evicts_the_largest_contributor_never_the_others(tmp_path, flood_order):
    store = FeedbackStore(_url(tmp_path), max_events=40)
    honest = [_event(f"a-honest{i}", f"k{i}", seed=i) for i in range(6) for _ in range(3)]  # 18 rows
    flood = [_event("a-flood", f"g{j % 4}", label="peace", seed=100 + j) for j in range(300)]
    if flood_order == "after":
        order = honest + flood
    elif flood_order == "before":
        order = flood + honest
    else:
        order = [e for pair in zip(flood[:18], honest, strict=True) for e in pair] + flood[18:]
    for event in order:
        store.add(event)
    counts = store.counts_by_contributor()
    assert store.count() == 40
    assert {c: n for c, n in counts.items() if c != "a-flood"} == {f"a-honest{i}": 3 for i in range(6)}
    assert counts["a-flood"] == 40 - 18
    # Two floods share what is left; honest rows still stay.
    for j in range(100):
        store.add(_event("a-flood2", "h", seed=500 + j))
    counts = store.counts_by_contributor()
    assert all(counts[f"a-honest{i}"] == 3 for i in range(6))
    assert abs(counts["a-flood"] - counts["a-flood2"]) <= 1
    store.close()


def test_per_game_total_refuses_and_per_contributor_total_evicts_only_its_own(tmp_path):
    store = FeedbackStore(_url(tmp_path), max_events=1000, max_per_contributor=5, max_per_session=3)
    first = [store.add(_event("a-x", "game1", seed=i)) for i in range(3)]
    with pytest.raises(FeedbackRefused) as refused:
        store.add(_event("a-x", "game1"))
    assert refused.value.reason == "game_total"
    store.add(_event("a-y", "other"))
    added = [store.add_event(_event("a-x", f"game{n}", seed=n)) for n in range(2, 6)]  # 7 of a-x
    assert [a.evicted for a in added] == [{}, {}, {"contributor_cap": 1}, {"contributor_cap": 1}]
    counts = store.counts_by_contributor()
    assert counts == {"a-x": 5, "a-y": 1}
    assert not {e.id for e in store.events()} & set(first[:2])  # a-x's own oldest went
    store.close()


def test_an_old_database_is_migrated_on_open(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as the previous version made it
        conn.execute("""CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at FLOAT NOT NULL, session_key VARCHAR(32) NOT NULL, origin VARCHAR(16) NOT NULL,
            predicted VARCHAR(40) NOT NULL,
            confidence FLOAT NOT NULL, label VARCHAR(40), direction VARCHAR(8) NOT NULL,
            model_version VARCHAR(64) NOT NULL, n_frames INTEGER NOT NULL, landmarks TEXT NOT NULL)""")
        xy = "[" + ",".join(["[" + ",".join(["[1.0,2.0]"] * 21) + "]"]) + "]"
        for key in ("s1", "s1", "s2", ""):
            conn.execute("INSERT INTO feedback (created_at, session_key, origin, predicted, confidence, "
                         "label, direction, model_version, n_frames, landmarks) "
                         "VALUES (1, ?, 'play', 'four', 0.9, 'three', 'left', '', 1, ?)", (key, xy))
    store = FeedbackStore(f"sqlite:///{path}", max_events=100)
    assert [e.contributor for e in store.events()] == ["session:s1", "session:s1", "session:s2", "unknown"]
    store.add(_event("a-new", "s3"))
    assert store.counts_by_contributor()["a-new"] == 1
    store.close()
    assert FeedbackStore(f"sqlite:///{path}").count() == 5  # a second open migrates nothing


# --------------------------------------------------------------------------- item 6: the recorder
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _settled(metrics: Metrics, result: str, value: float) -> str:
    line = f'gesture_maze_feedback_total{{result="{result}"}} {value}'
    for _ in range(500):
        text = metrics.render().decode()
        if line in text:
            return text
        await asyncio.sleep(0.01)
    raise AssertionError(f"{line} never appeared:\n" + text)


async def test_recorder_caps_rates_per_game_and_per_address_and_stores_only_an_opaque_id(tmp_path):
    clock, metrics = Clock(), Metrics(process=False)
    ids = ContributorIds.from_secret_or_file(None, tmp_path)
    recorder = FeedbackRecorder(
        _url(tmp_path), 1000, metrics, contributors=ids,
        game_rate=KeyedRateLimiter(3, 60.0, clock), address_rate=KeyedRateLimiter(8, 3600.0, clock),
    )
    # One address, four games, 20 corrections each at once: 3 per game pass the game rate, and the
    # address rate holds all of them to 8.
    results = [recorder.submit(_event(key=f"g{g}", seed=i), "203.0.113.7")
               for g in range(4) for i in range(20)]
    assert results.count(True) == 3 + 3 + 2
    honest = recorder.submit(_event(key="h1"), "198.51.100.2")  # another address is not affected
    assert honest
    await _settled(metrics, "stored", 9.0)
    text = metrics.render().decode()
    assert 'gesture_maze_feedback_total{result="refused_game_rate"} 68.0' in text
    assert 'gesture_maze_feedback_total{result="refused_address_rate"} 4.0' in text
    clock.now += 60.0  # a minute later the games may store again, within the address's hour
    assert not recorder.submit(_event(key="g0"), "203.0.113.7")
    await recorder.close()
    store = FeedbackStore(_url(tmp_path))
    counts = store.counts_by_contributor()
    assert counts == {ids.of("203.0.113.7"): 8, ids.of("198.51.100.2"): 1}
    assert all(c.startswith("a-") and len(c) == 26 for c in counts)
    store.close()
    assert b"203.0.113.7" not in (tmp_path / "fb.db").read_bytes()
    # The same key file gives the same ids (restarts agree); a secret overrides it.
    assert ContributorIds.from_secret_or_file(None, tmp_path).of("x") == ids.of("x")
    assert ContributorIds.from_secret_or_file("s" * 20, tmp_path).of("x") != ids.of("x")
    assert (tmp_path / "contributor.key").stat().st_mode & 0o077 == 0


async def test_recorder_counts_store_refusals_and_evictions(tmp_path):
    metrics = Metrics(process=False)
    recorder = FeedbackRecorder(_url(tmp_path), 4, metrics, max_per_game=2, max_per_contributor=3)
    for i in range(3):
        recorder.submit(_event(key="g", seed=i), "192.0.2.1")
    await _settled(metrics, "refused_game_total", 1.0)
    for i in range(3):
        recorder.submit(_event(key=f"k{i}", seed=i), "192.0.2.1")  # 5 of one contributor: cap 3
    for i in range(2):
        recorder.submit(_event(key=f"o{i}", seed=i), "192.0.2.2")  # table of 4: the largest pays
    await _settled(metrics, "stored", 7.0)
    text = metrics.render().decode()
    assert 'gesture_maze_feedback_evicted_total{reason="contributor_cap"} 2.0' in text
    assert 'gesture_maze_feedback_evicted_total{reason="table_full"} 1.0' in text
    await recorder.close()


# ------------------------------------------------------------------------------ item 7: the gate
def _stored(i: int, who: str, label: str = "three") -> StoredFeedback:
    return StoredFeedback(i, "four", label, "k", "play", 0.0, np.zeros((1, 21, 2)), who)


def test_the_held_out_slice_is_whole_contributors_and_never_one_source():
    one = [_stored(i, "a-one") for i in range(23)]
    training, held = split_by_contributor(one, 0.3, 2)
    assert held == [] and len(training) == 23  # one source: nothing to judge by
    many = [_stored(i, f"a-{i % 7}") for i in range(70)]
    training, held = split_by_contributor(many, 0.3, 2)
    judges = {e.contributor for e in held}
    assert len(judges) == 3 and not judges & {e.contributor for e in training}
    assert split_by_contributor(many, 0.3, 2) == (training, held)  # fixed
    two = [_stored(i, f"a-{i % 2}") for i in range(10)]
    assert split_by_contributor(two, 0.3, 2)[1] == []  # 2 judges would leave nobody to learn from


def test_each_contributor_is_capped_in_training():
    events = [_stored(i, "a-flood") for i in range(100)]
    events += [_stored(100 + i, f"a-h{i % 3}") for i in range(12)]
    kept = cap_contributors(events, 30)
    per = {c: sum(e.contributor == c for e in kept) for c in {e.contributor for e in kept}}
    assert per == {"a-flood": 4, "a-h0": 4, "a-h1": 4, "a-h2": 4}  # the median contributor's 4
    assert [e.id for e in kept if e.contributor == "a-flood"] == list(range(96, 100))  # its newest
    assert len(cap_contributors([_stored(i, "a-one") for i in range(50)], 30)) == 30
    uneven = [_stored(i, "a-big") for i in range(40)] + [_stored(40 + i, f"a-{i % 4}") for i in range(13)]
    per = {c: sum(e.contributor == c for e in cap_contributors(uneven, 30)) for c in ("a-big", "a-0", "a-3")}
    assert per == {"a-big": 3, "a-0": 3, "a-3": 3}  # offers 40, 4, 3, 3, 3: lower median 3


def test_flips_and_contributor_accuracy():
    y = np.array(["a"] * 100 + ["b"] * 50)
    champ = y.copy()
    cand = y.copy()
    cand[:2] = "b"  # 2 of 100 `a` rows turn wrong: allowed (2 %)
    assert worst_flips(cand, champ, y, 0.02)[1:] == (2, 2)
    cand[100] = "a"  # 1 of 50 `b` rows: allowed (at least one row)
    cand[101] = "a"  # 2 of 50: not
    assert worst_flips(cand, champ, y, 0.02) == ("b", 2, 1)
    fixed = champ.copy()
    fixed[:5] = "b"
    assert worst_flips(y, fixed, y, 0.02)[1] == 0  # corrections are not flips
    # One contributor's many rows count once.
    answers, truth = np.array(["x"] * 10 + ["y", "z"]), np.array(["x"] * 10 + ["z", "z"])
    who = np.array(["big"] * 10 + ["s1", "s2"])
    assert contributor_accuracy(answers, truth, who) == pytest.approx((1 + 0 + 1) / 3)


@pytest.mark.parametrize(
    ("contributors", "flips", "passed"), [(2, 0, True), (1, 0, False), (3, 5, False), (3, 1, True)],
)
def test_gate_needs_contributors_and_few_flips(contributors, flips, passed):
    gate = Gate(0.95, 0.95, "like", 0.0, 0.9, 0.5, 0.02, contributors, 2, "three", flips, 1, 0.02)
    assert gate.passed is passed
    assert bool(gate.reasons()) is not passed


def test_evaluate_reads_contributors_from_the_slice():
    y = np.array(["a", "b"] * 10)
    fb_y = np.array(["a"] * 4)
    gate, _, _ = evaluate(y, y, y, fb_y, np.array(["b"] * 4), fb_y, ["a", "b"], 0.02,
                          np.array(["p", "p", "p", "p"]))
    assert gate.holdout_contributors == 1 and not gate.passed
    gate, _, _ = evaluate(y, y, y, fb_y, np.array(["b"] * 4), fb_y, ["a", "b"], 0.02,
                          np.array(["p", "p", "q", "r"]))
    assert gate.holdout_contributors == 3 and gate.passed


# ---------------------------------------------------------------------------- item 8: donations
def _profile(per_gesture: int = 60, gestures: int = 12) -> PlayerProfile:
    profile = PlayerProfile(donate=True)
    for g in range(gestures):
        profile.landmarks[f"g{g}"] = [[[float(i), float(g)]] * 21 for i in range(per_gesture)]
    return profile


def test_donation_rows_are_capped_per_gesture_and_per_game():
    rows, capped = donation_rows(_profile(), max_per_gesture=20, max_samples=120)
    assert len(rows) <= 120 and capped == 720 - len(rows)
    labels = [r[-1] for r in rows]
    assert len(set(labels)) == 12 and max(labels.count(g) for g in set(labels)) <= 20
    spread = [r[0] for r in rows if r[-1] == "g0"]
    assert spread[0] == 0.0 and spread[-1] >= 50.0  # spread over the recording, not its first frames


def test_donations_are_capped_per_address_per_day_and_by_folder_bytes(tmp_path, caplog):
    clock, metrics = Clock(), Metrics(process=False)
    clock.now = 1_800_000_000.0
    box = DonationBox(tmp_path / "donations", 20, 120, per_address_per_day=2, max_bytes=0, metrics=metrics,
                      clock=clock)
    paths = [box.donate("a-one", f"s{i}", _profile()) for i in range(3)]
    assert paths[0] and paths[1] and paths[2] is None
    assert box.donate("a-two", "s9", _profile())  # another address is not affected
    files = sorted((tmp_path / "donations").glob("*.csv"))
    assert len(files) == 3 and all("-a-one-" in f.name or "-a-two-" in f.name for f in files)
    size = files[0].stat().st_size
    assert size < 120 * 21 * 2 * 20  # ~120 rows, not 720
    text = metrics.render().decode()
    assert 'gesture_maze_donations_total{result="refused_address"} 1.0' in text
    assert 'gesture_maze_donations_total{result="stored"} 3.0' in text
    assert "refused" in caplog.text and "GM_DONATIONS_ADDRESS_PER_DAY" in caplog.text

    full = DonationBox(tmp_path / "donations", 20, 120, per_address_per_day=0, max_bytes=4 * size,
                       metrics=metrics, clock=clock)
    assert full.donate("a-three", "s10", _profile()) is not None  # 4 files fit
    assert full.donate("a-four", "s11", _profile()) is None  # a fifth would not
    assert len(list((tmp_path / "donations").glob("*.csv"))) == 4
    text = metrics.render().decode()
    assert 'gesture_maze_donations_total{result="refused_full"} 1.0' in text
    assert "GM_DONATIONS_MAX_BYTES" in caplog.text
    assert f"gesture_maze_donations_bytes {float(4 * size)}" in text or "gesture_maze_donations_bytes" in text
