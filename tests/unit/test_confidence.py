"""What the served confidence means (docs/decisions/0022-confidence-that-means-something.md).

The pieces (pairwise coupling, its sigmoid, the confidence figures) on synthetic data, then the
shipped default model on rows of people it was never trained on, shipped in the repository
(`data/heldout/`, `data/natural/`, so no `../shared` is needed): right answers must come with
clearly higher confidence than wrong ones, and natural hands must be answered `no_gesture`.
"""

from __future__ import annotations

import numpy as np
import pytest

from model.classifier import load_classifier
from model.datasets import read_landmark_csv
from model.evaluation import (
    auroc,
    brier_decomposition,
    confidence_quality,
    risk_coverage,
    selective_accuracy,
)
from model.features import features_from_xy
from model.openset import (
    NO_GESTURE,
    OpenSetHead,
    fit_pairwise_sigmoid,
    pairwise_coupling,
    pairwise_index,
)
from model.train import DEFAULT_HELDOUT_DIR, DEFAULT_NATURAL_DIR, NaturalHands


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


# ------------------------------------------------------------------------------------------ coupling
def test_two_classes_coupling_is_the_pairwise_sigmoid():
    dec = np.array([[-2.0], [0.0], [1.5]])
    p = pairwise_coupling(dec, 2, 1.7, -0.2)
    assert p[:, 0] == pytest.approx(1.0 / (1.0 + np.exp(-(1.7 * dec[:, 0] - 0.2))))
    assert p.sum(axis=1) == pytest.approx(1.0)


def test_consistent_pairwise_probabilities_give_back_the_class_probabilities():
    rng = np.random.default_rng(0)
    for k in (3, 5, 19):
        true = rng.dirichlet(np.ones(k), size=4)
        pi, pj = pairwise_index(k)
        dec = _logit(true[:, pi] / (true[:, pi] + true[:, pj]))  # r_ij = p_i / (p_i + p_j)
        assert pairwise_coupling(dec, k, 1.0, 0.0) == pytest.approx(true, abs=1e-6)
        assert pairwise_coupling(dec[0], k, 1.0, 0.0) == pytest.approx(true[0], abs=1e-6)  # one hand


def test_pairwise_sigmoid_is_recovered_from_labels_drawn_with_it():
    rng = np.random.default_rng(1)
    dec = rng.normal(scale=2.0, size=(8000, 1))
    first = rng.uniform(size=8000) < 1.0 / (1.0 + np.exp(-(2.0 * dec[:, 0] - 0.5)))
    a, b = fit_pairwise_sigmoid(dec, np.where(first, 0, 1), 2)
    assert a == pytest.approx(2.0, rel=0.1) and b == pytest.approx(-0.5, abs=0.1)


def test_head_keeps_its_coupling_and_reads_the_first_format(tmp_path):
    rng = np.random.default_rng(2)
    head = OpenSetHead.fit_reference(rng.normal(size=(300, 20)), components=8)
    head.set_threshold(rng.uniform(size=50), 0.5)
    assert OpenSetHead.load(head.save(tmp_path / "v1.npz")).coupling is None
    head.coupling = (3.5, -0.1)
    loaded = OpenSetHead.load(head.save(tmp_path / "v2.npz"))
    assert loaded.coupling == pytest.approx((3.5, -0.1))
    assert loaded.summary()["coupling"] == pytest.approx([3.5, -0.1])


# ---------------------------------------------------------------------------------- figures of merit
def test_a_constant_confidence_has_no_resolution_and_no_discrimination():
    correct = np.arange(1000) < 950
    constant = np.full(1000, 0.95)
    assert auroc(constant, correct) == pytest.approx(0.5)
    parts = brier_decomposition(constant, correct)
    assert parts["resolution"] == pytest.approx(0.0) and parts["reliability"] == pytest.approx(0.0)
    assert parts["brier"] == pytest.approx(parts["uncertainty"])


def test_a_confidence_that_ranks_every_wrong_answer_last():
    correct = np.arange(1000) < 900
    conf = np.where(correct, 0.99, 0.4)
    assert auroc(conf, correct) == pytest.approx(1.0)
    assert selective_accuracy(conf, correct, 0.8) == 1.0
    curve = risk_coverage(conf, correct)
    assert all(p["accuracy"] == 1.0 for p in curve if p["coverage"] <= 0.9)
    assert curve[-1]["coverage"] == 1.0 and curve[-1]["accuracy"] == pytest.approx(0.9)
    parts = brier_decomposition(conf, correct)
    assert parts["resolution"] == pytest.approx(parts["uncertainty"])  # it separates perfectly
    assert parts["brier"] == pytest.approx(parts["reliability"] - parts["resolution"] + parts["uncertainty"])


# ------------------------------------------------------------------------- the shipped default model
@pytest.fixture(scope="module")
def default():
    return load_classifier(None)


@pytest.fixture(scope="module")
def heldout_answers(default):
    """The shipped model's answers for 2,000 gesture hands of HaGRID test people: none of their hands
    is trained on (people whose natural hand is a training row of the no_gesture class are left out)."""
    ds = read_landmark_csv(DEFAULT_HELDOUT_DIR / "hagrid_test_gestures_kp42.csv")
    natural = read_landmark_csv(DEFAULT_NATURAL_DIR / "hagrid_no_gesture_kp42.csv")
    split = NaturalHands.read([DEFAULT_NATURAL_DIR / "hagrid_no_gesture_kp42.csv"])
    assert split is not None
    trained = set(natural.sources[split.part != "test"].tolist())
    new = np.flatnonzero(~np.isin(ds.sources, sorted(trained)))
    assert len(new) > 2500
    rows = np.random.default_rng(0).choice(new, 2000, replace=False)
    X = features_from_xy(ds.xy[rows])
    answers = [default.predict(x) for x in X]
    gesture = np.array([a.gesture for a in answers])
    conf = np.array([a.confidence for a in answers])
    return gesture, conf, ds.labels[rows]


def test_the_default_model_serves_coupled_probabilities_through_the_fast_path(default):
    assert default.openset is not None and default.openset.coupling is not None
    assert default._fast is not None  # the compiled path agreed with scikit-learn when it loaded
    assert NO_GESTURE in default.classes  # a trained no_gesture class
    ds = read_landmark_csv(DEFAULT_HELDOUT_DIR / "hagrid_test_gestures_kp42.csv")
    X = features_from_xy(ds.xy[:20])
    proba = default.predict_proba(X)
    for x, p in zip(X, proba, strict=True):
        got = default.predict(x)  # the served confidence is the answer's own coupled probability
        own = float(p[default.classes.index(got.gesture)])
        if got.gesture == NO_GESTURE:  # (or the distance head's sureness, when that is larger)
            assert got.confidence >= own * (1 - 1e-4)
        else:  # the fast path's float32 kernel product: within 1e-4 of scikit-learn's float64
            assert got.confidence == pytest.approx(own, rel=1e-4)
        assert got.closest in default.gestures


def test_right_answers_are_clearly_surer_than_wrong_ones_for_new_people(heldout_answers):
    gesture, conf, truth = heldout_answers
    answered = gesture != NO_GESTURE
    assert answered.mean() >= 0.97  # a new person's true gestures are answered with a gesture
    right = gesture[answered] == truth[answered]
    c = conf[answered]
    assert (~right).sum() >= 20  # enough wrong answers for the figures below to mean something
    q = confidence_quality(c, right)
    assert q["auroc"] >= 0.85, q
    assert q["median_confidence_right"] - q["median_confidence_wrong"] >= 0.15, q
    assert q["accuracy_at_80_coverage"] >= 0.99, q
    assert q["ece"] <= 0.05, q
    assert q["resolution"] > 0.003, q  # the old near-constant confidence had ~0.001
    assert np.mean(c[~right] < 0.9) >= 0.5  # most misreadings are not served as "sure"


def test_natural_hands_of_people_never_trained_on_are_answered_no_gesture(default):
    natural = NaturalHands.read(sorted(DEFAULT_NATURAL_DIR.glob("*.csv")))
    assert natural is not None
    X = natural.rows("test")
    assert len(X) > 400
    answers = np.array([default.predict(x).gesture for x in X])
    assert np.mean(answers == NO_GESTURE) >= 0.90
