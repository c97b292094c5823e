"""Open-set recognition: temperature, ECE, the no_gesture threshold, the head's file, and what the
shipped default model answers for real non-gesture hands (data/negatives)."""

from __future__ import annotations

import numpy as np
import pytest

from maze import Direction
from model.classifier import load_classifier
from model.datasets import read_landmark_csv
from model.features import features_from_xy
from model.openset import (
    NO_GESTURE,
    OpenSetHead,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from model.schemes import counting_table, direction_for
from model.smoothing import Smoother, SmoothingConfig
from model.train import DEFAULT_NEGATIVES_DIR


def test_temperature_is_recovered_from_labels_drawn_with_it():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4000, 6))
    p = softmax(logits, 0.4)
    y = np.array([rng.choice(6, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(0.4, rel=0.1)


def test_ece_is_small_when_confidence_matches_accuracy_and_large_when_not():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 20000)
    correct = rng.uniform(size=conf.size) < conf
    assert expected_calibration_error(conf, correct) < 0.02
    assert expected_calibration_error(np.full(1000, 0.9), np.arange(1000) < 600) == pytest.approx(0.3)


def test_threshold_keeps_the_required_share_of_gestures_and_rejects_the_most_negatives():
    rng = np.random.default_rng(2)
    known, negatives = rng.normal(1.0, 0.3, 2000), rng.normal(3.0, 0.5, 500)
    chosen = choose_threshold(known, negatives, min_accept=0.95)
    assert chosen.accepted >= 0.95
    assert chosen.rejected > 0.95
    assert np.mean(known <= chosen.threshold) == pytest.approx(chosen.accepted)
    stricter = choose_threshold(known, negatives, min_accept=0.999)
    assert stricter.threshold >= chosen.threshold and stricter.rejected <= chosen.rejected
    alone = choose_threshold(known, None, min_accept=0.97)  # without negatives: the quantile
    assert alone.accepted == pytest.approx(0.97, abs=0.001)


def test_head_file_round_trip_and_nearest_row_distance(tmp_path):
    rng = np.random.default_rng(3)
    train = rng.normal(size=(500, 72))
    head = OpenSetHead.fit_reference(train, components=72)
    head.beta = 1.7
    head.set_threshold(head.ood_scores(rng.normal(size=(200, 72))), 4.0)
    loaded = OpenSetHead.load(head.save(tmp_path / "openset.npz"))
    assert loaded.beta == 1.7 and loaded.threshold == 4.0
    probe = rng.normal(size=(5, 72))
    brute = np.sqrt(((probe[:, None, :] - train[None]) ** 2).sum(axis=2)).min(axis=1)
    np.testing.assert_allclose(loaded.ood_scores(probe), brute, rtol=2e-3)  # float16 reference rows
    assert 0.0 <= loaded.novelty(float(brute[0])) <= 1.0


def test_a_hand_nearer_a_known_non_gesture_is_no_gesture(tmp_path):
    rng = np.random.default_rng(4)
    gestures = rng.normal(size=(400, 8))
    negatives = rng.normal(size=(50, 8)) + np.array([3.0] + [0.0] * 7)  # a pose next to the gestures
    head = OpenSetHead.fit_reference(gestures, components=8)
    head.set_threshold(head.ood_scores(rng.normal(size=(200, 8))), 10.0)  # far beyond both clouds
    probe = np.vstack([np.array([3.0] + [0.0] * 7), np.zeros(8)])  # among the negatives / the gestures
    assert not head.rejects(probe).any()  # the distance alone lets both through
    known = head.with_negatives(negatives)
    assert known.rejects(probe).tolist() == [True, False]
    rejected, score, sureness = known.verdict(probe[0])
    assert rejected and score <= known.threshold and 0.5 < sureness <= 1.0
    assert known.verdict(probe[1])[0] is False
    loaded = OpenSetHead.load(known.save(tmp_path / "openset.npz"))
    assert loaded.rejects(probe).tolist() == [True, False]
    assert loaded.summary()["known_negative_rows"] == 50
    # An older head file without known non-gestures still loads and rejects by distance only.
    assert OpenSetHead.load(head.save(tmp_path / "plain.npz")).negatives is None


def test_no_gesture_never_moves():
    with pytest.raises(ValueError, match="no_gesture"):
        counting_table({NO_GESTURE: "up"})
    assert direction_for("counting", NO_GESTURE, None, counting_table({"one": "up"})) is None
    smoother = Smoother(SmoothingConfig(hold_frames=2, hold_ms=1000))
    assert smoother.update("one", 0.9, Direction.UP, 0.0) is None
    assert smoother.update(NO_GESTURE, 0.99, None, 0.05) is None  # re-arms like a neutral gesture
    assert smoother.holding is None


@pytest.fixture(scope="module")
def default():
    return load_classifier(None)


def test_default_model_has_an_open_set_head(default):
    assert default.openset is not None
    assert 0 < default.openset.threshold < np.inf


def test_default_model_answers_no_gesture_for_most_real_negatives(default, landmarks_csv):
    files = sorted(DEFAULT_NEGATIVES_DIR.glob("*.csv"))
    negatives = np.vstack([features_from_xy(read_landmark_csv(p).xy) for p in files])
    answers = [default.predict(x).gesture for x in negatives]
    assert np.mean(np.array(answers) == NO_GESTURE) > 0.5
    known = read_landmark_csv(landmarks_csv)
    rows = features_from_xy(known.xy[np.random.default_rng(0).choice(len(known), 400, replace=False)])
    assert np.mean([default.predict(x).gesture != NO_GESTURE for x in rows]) > 0.95
    p = default.predict(negatives[0])
    if p.gesture == NO_GESTURE:  # far from the gestures, or nearer a known non-gesture (sure >= 0.5)
        assert p.closest in default.classes
        assert p.ood_score > default.openset.threshold or p.confidence >= 0.5
