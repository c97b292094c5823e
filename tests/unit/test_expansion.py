"""The kernel expansion (model.expansion): an RBF SVM's decisions from fewer of its support vectors,
fitted from the model alone, shipped only when it answers as the SVM does, stored beside the model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model.classifier import GestureClassifier, ModelInfo, ModelLoadError, load_classifier, load_directory
from model.datasets import read_landmark_csv
from model.estimators import Candidate, build
from model.expansion import EXPANSION_FILE, MIN_AGREEMENT, ExpansionError, KernelExpansion, choose_basis
from model.features import FEATURE_VERSION, features_from_xy
from model.openset import OpenSetHead
from model.registry import write_model_dir
from model.train import compile_expansion
from tests.support.paths import REPO_ROOT

# Real hands shipped in the repository (HaGRID's subsample annotations, data/gestures/SOURCES.md).
HANDS = REPO_ROOT / "data" / "gestures" / "hagrid_subsample_annotations_kp42.csv"
HELDOUT = REPO_ROOT / "data" / "heldout" / "hagrid_test_gestures_kp42.csv"
METADATA = {"feature_version": FEATURE_VERSION, "name": "t"}


@pytest.fixture(scope="module")
def hands() -> tuple[np.ndarray, np.ndarray]:
    ds = read_landmark_csv(HANDS)
    return ds.xy, ds.labels


@pytest.fixture(scope="module")
def fitted(hands) -> tuple[GestureClassifier, np.ndarray, np.ndarray]:
    """An SVM on every other hand (coupled head as shipped) and the other half, never trained on."""
    xy, labels = hands
    X = features_from_xy(xy)
    model = build(Candidate("svm_rbf", {"C": 30, "gamma": "scale"})).fit(X[::2], labels[::2])
    head = replace(OpenSetHead.fit_reference(model[0].transform(X[::2])), beta=1.0,
                   threshold=float("inf"), coupling=(2.4, 0.1))
    clf = GestureClassifier(model, ModelInfo("test", "1", None, "test", FEATURE_VERSION), head)
    return clf, X[::2], X[1::2]


def _decisions(clf: GestureClassifier, X: np.ndarray) -> np.ndarray:
    return clf._fast.ovo(clf._fast.scaled(X))


def test_the_basis_covers_the_data_before_it_refines_it():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.vstack([c + rng.normal(0, 0.3, (40, 2)) for c in centres])
    chosen = choose_basis(points, gamma=0.5, size=12)
    assert len(set(chosen.tolist())) == 12  # never the same vector twice
    assert sorted(int(i) // 40 for i in chosen[:3]) == [0, 1, 2]  # one per cluster first


def test_every_support_vector_as_basis_gives_the_svm_back(fitted):
    clf, _, unseen = fitted
    n_sv = len(clf._fast.sv)
    exact = _decisions(clf, unseen)
    clf.use_expansion(clf.fit_expansion(n_sv - 1))
    try:
        assert clf.expansion is not None and clf.expansion.size == n_sv - 1
        assert np.abs(_decisions(clf, unseen) - exact).max() < 0.05
        assert clf.agreement(unseen, clf.expansion) == 1.0
    finally:
        clf.use_expansion(None)
    assert np.array_equal(_decisions(clf, unseen), exact)  # switched off: every support vector again


def test_a_smaller_basis_is_shipped_only_when_it_answers_as_the_svm(fitted):
    clf, _, unseen = fitted
    n_sv = len(clf._fast.sv)
    exact = _decisions(clf, unseen)
    errors = []
    for size in (n_sv // 8, n_sv // 2):
        clf.use_expansion(clf.fit_expansion(size))
        errors.append(np.abs(_decisions(clf, unseen) - exact).mean())
        clf.use_expansion(None)
    assert errors[1] < errors[0]  # more basis vectors, closer to the SVM
    assert compile_expansion(clf, 3, unseen) is None  # three vectors cannot answer like 18 classes' SVM
    assert compile_expansion(clf, 0, unseen) is None  # switched off
    assert compile_expansion(clf, n_sv, unseen) is None  # nothing to gain
    shipped = compile_expansion(clf, n_sv - 1, unseen)
    assert shipped is not None and shipped.agreement >= MIN_AGREEMENT
    assert clf.expansion is None  # compiling leaves the classifier as it was


def test_an_expansion_beside_the_model_is_served_and_written_over(fitted, hands, tmp_path):
    clf, _, unseen = fitted
    xy, _ = hands
    expansion = clf.fit_expansion(len(clf._fast.sv) // 2)
    directory = write_model_dir(clf.estimator, tmp_path / "m", METADATA, training_hands=xy[::2])
    clf.openset.save(directory / "openset.npz")
    expansion.save(directory / EXPANSION_FILE)
    loaded = load_directory(directory)
    assert loaded.expansion is not None and np.array_equal(loaded.expansion.basis, expansion.basis)
    clf.use_expansion(expansion)
    try:
        expected = [p.gesture for p in clf.predict_many(unseen)]
        assert [p.gesture for p in loaded.predict_many(unseen)] == expected
    finally:
        clf.use_expansion(None)
    # Another model written into the directory must not be served through this one's expansion.
    write_model_dir(clf.estimator, directory, METADATA)
    assert not (directory / EXPANSION_FILE).exists() and load_directory(directory).expansion is None


@pytest.mark.parametrize("broken", ["index", "shape", "nan"])
def test_an_expansion_that_does_not_fit_its_model_is_refused(fitted, tmp_path, broken):
    clf, _, _ = fitted
    good = clf.fit_expansion(20)
    bad = {
        "index": replace(good, basis=good.basis + len(clf._fast.sv)),
        "shape": replace(good, weights=good.weights[:, :-1]),
        "nan": replace(good, bias=np.full_like(good.bias, np.nan)),
    }[broken]
    with pytest.raises(ExpansionError):
        clf.use_expansion(bad)
    directory = write_model_dir(clf.estimator, tmp_path / "m", METADATA)
    bad.save(directory / EXPANSION_FILE)
    with pytest.raises(ModelLoadError, match="expansion"):
        load_directory(directory)


def test_a_model_without_an_rbf_svm_takes_no_expansion(hands):
    xy, labels = hands
    model = build(Candidate("knn", {"n_neighbors": 3})).fit(features_from_xy(xy[::4]), labels[::4])
    clf = GestureClassifier(model, ModelInfo("test", "1", None, "test", FEATURE_VERSION))
    assert clf.fit_expansion(10) is None
    with pytest.raises(ExpansionError):
        clf.use_expansion(KernelExpansion(np.arange(2), np.zeros((2, 153), np.float32), np.zeros(153)))


def test_the_default_answers_new_people_through_its_expansion_as_the_svm_does():
    default = load_classifier(None)
    assert default.expansion is not None and default.expansion.size < len(default._fast.sv) / 2
    assert default.expansion.agreement >= MIN_AGREEMENT  # measured on validation when it was shipped
    X = features_from_xy(read_landmark_csv(HELDOUT).xy)  # HaGRID's test people, never trained on
    assert default.agreement(X, default.expansion) >= MIN_AGREEMENT
    served = np.array([p.confidence for p in default.predict_many(X)])
    default.use_expansion(None)
    exact = np.array([p.confidence for p in default.predict_many(X)])
    assert np.median(np.abs(served - exact)) < 0.005


def test_an_expansion_file_round_trips(tmp_path):
    expansion = KernelExpansion(np.array([3, 1, 2]), np.arange(6, dtype=np.float32).reshape(3, 2),
                                np.array([0.5, -0.5]), 0.999)
    again = KernelExpansion.load(expansion.save(Path(tmp_path) / EXPANSION_FILE))
    assert np.array_equal(again.basis, expansion.basis) and np.array_equal(again.weights, expansion.weights)
    assert np.array_equal(again.bias, expansion.bias) and again.agreement == expansion.agreement
