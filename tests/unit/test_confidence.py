"""What the served confidence means (docs/decisions/0022-confidence-that-means-something.md, 0026).

The pieces (pairwise coupling, its sigmoid, the confidence figures) on synthetic data, then the
shipped default model on rows of people it was never trained on, shipped in the repository
(`data/heldout/`, `data/natural/`, so no `../shared` is needed): right answers must come with
clearly higher confidence than wrong ones, and natural hands must be answered `no_gesture`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model.classifier import GestureClassifier, load_classifier
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
    duel_confidence,
    fit_duel_sigmoid,
    fit_pairwise_sigmoid,
    pairwise_coupling,
    pairwise_index,
    weakest_duels,
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


# ------------------------------------------------------------------------------------ weakest duel
def test_each_class_is_as_sure_as_its_closest_duel():
    # Pairs (0, 1), (0, 2), (1, 2); > 0: the pair's first class wins.
    dec = np.array([[2.0, -1.0, 3.0]])
    assert weakest_duels(dec, 3).tolist() == [[-1.0, -2.0, -3.0]]
    # Losing to class 2 (the trained no_gesture class) does not count against a gesture.
    assert weakest_duels(dec, 3, exclude=2).tolist() == [[2.0, -2.0, -3.0]]


def test_duel_sigmoid_is_recovered_from_answers_drawn_with_it():
    rng = np.random.default_rng(3)
    weakest = rng.normal(scale=1.5, size=50_000)
    right = rng.uniform(size=50_000) < duel_confidence(weakest, (2.5, 0.3))
    a, b = fit_duel_sigmoid(weakest, right)
    assert a == pytest.approx(2.5, rel=0.1) and b == pytest.approx(0.3, abs=0.1)


def test_head_keeps_its_duel_sigmoid(tmp_path):
    rng = np.random.default_rng(4)
    head = OpenSetHead.fit_reference(rng.normal(size=(300, 20)), components=8)
    head.set_threshold(rng.uniform(size=50), 0.5)
    head.coupling = (3.5, -0.1)
    assert OpenSetHead.load(head.save(tmp_path / "plain.npz")).duel is None
    head.duel = (2.4, 0.13)
    loaded = OpenSetHead.load(head.save(tmp_path / "duel.npz"))
    assert loaded.duel == pytest.approx((2.4, 0.13))
    assert loaded.with_reference(rng.normal(size=(10, 20))).duel == pytest.approx((2.4, 0.13))


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


def test_the_default_model_serves_its_weakest_duel_through_the_fast_path(default):
    # Over every support vector, to compare with scikit-learn's decisions within float32's rounding
    # (the kernel expansion's own agreement: tests/unit/test_expansion.py).
    default = GestureClassifier(default.estimator, default.info, default.openset)
    head = default.openset
    assert head is not None and head.coupling is not None and head.duel is not None
    assert default._fast is not None  # the compiled path agreed with scikit-learn when it loaded
    assert NO_GESTURE in default.classes  # a trained no_gesture class
    ds = read_landmark_csv(DEFAULT_HELDOUT_DIR / "hagrid_test_gestures_kp42.csv")
    X = features_from_xy(ds.xy[:40])
    proba = default.predict_proba(X)  # scikit-learn's decision values, coupled: they pick the answer
    svc_classes = [str(c) for c in default.estimator.steps[-1][1].classes_]
    weakest = weakest_duels(default.pairwise_decisions(X), len(svc_classes), svc_classes.index(NO_GESTURE))
    for x, p, w in zip(X, proba, weakest, strict=True):
        got = default.predict(x)
        own = float(p[default.classes.index(got.gesture)])
        if got.gesture == NO_GESTURE:  # its probability (or the distance head's sureness, if larger)
            assert got.confidence >= own * (1 - 1e-4)
        else:  # a gesture: the sigmoid of its closest duel (float32 kernel product: within 1e-4)
            assert got.gesture == default.classes[int(np.argmax(np.where(
                np.array(default.classes) == NO_GESTURE, -1.0, p)))]
            expected = float(duel_confidence(w[svc_classes.index(got.gesture)], head.duel))
            assert got.confidence == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert got.closest in default.gestures


def test_the_duel_changes_the_confidence_never_the_answer(default):
    ds = read_landmark_csv(DEFAULT_HELDOUT_DIR / "hagrid_test_gestures_kp42.csv")
    X = features_from_xy(ds.xy[::50][:80])
    coupled = GestureClassifier(default.estimator, default.info, replace(default.openset, duel=None))
    with_duel, without = default.predict_many(X), coupled.predict_many(X)
    assert [p.gesture for p in with_duel] == [p.gesture for p in without]
    assert [p.closest for p in with_duel] == [p.closest for p in without]
    changed = [a.confidence != pytest.approx(b.confidence) for a, b in zip(with_duel, without, strict=True)
               if a.gesture != NO_GESTURE]
    assert sum(changed) >= len(changed) // 2
    slow = GestureClassifier(default.estimator, default.info, default.openset)
    slow._fast = None  # scikit-learn's own decision values
    for a, b in zip(slow.predict_many(X[:10]), with_duel[:10], strict=True):
        assert a.gesture == b.gesture and a.confidence == pytest.approx(b.confidence, rel=1e-4)


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
