"""An SVM over the first principal components of the standardised features (`pca=k`): served by the
compiled path with scikit-learn's answers, stored as its support hands, and loaded with the trusted
types (docs/training.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from model.classifier import GestureClassifier, ModelInfo, _FastSVC, load_directory
from model.datasets import read_landmark_csv
from model.estimators import Candidate, build
from model.features import FEATURE_VERSION, features_from_xy
from model.openset import OpenSetHead
from model.registry import write_model_dir
from model.support_hands import SUPPORT_HANDS_FILE
from tests.support.served import assert_serves_what_scikit_learn_answers

# Real hands shipped in the repository (HaGRID's subsample annotations, data/gestures/SOURCES.md).
HANDS = Path(__file__).resolve().parents[2] / "data" / "gestures" / "hagrid_subsample_annotations_kp42.csv"


@pytest.fixture(scope="module")
def hands() -> tuple[np.ndarray, np.ndarray]:
    ds = read_landmark_csv(HANDS)
    return ds.xy, ds.labels


@pytest.fixture(scope="module")
def model(hands):
    xy, labels = hands
    candidate = Candidate("svm_rbf", {"C": 30, "gamma": "scale", "pca": 24})
    return build(candidate).fit(features_from_xy(xy), labels)


def _classifier(model, head: OpenSetHead | None) -> GestureClassifier:
    return GestureClassifier(model, ModelInfo("test", "1", None, "test", FEATURE_VERSION), head)


def test_the_kernel_sees_the_projection_only(model):
    assert [name for name, _ in model.steps] == ["scale", "pca", "clf"]
    assert model[-1].support_vectors_.shape[1] == 24


@pytest.mark.parametrize("coupled", [False, True])
def test_the_compiled_path_serves_what_scikit_learn_answers(model, hands, coupled):
    X = features_from_xy(hands[0])
    head = dataclasses.replace(OpenSetHead.fit_reference(model[0].transform(X)), beta=0.8,
                               threshold=float("inf"), coupling=(2.5, -0.1) if coupled else None)
    clf = _classifier(model, head)
    assert isinstance(clf._fast, _FastSVC) and clf._fast.projection is not None
    batch = X[::7][:64]
    assert_serves_what_scikit_learn_answers(clf, batch)


def test_a_saved_model_keeps_its_support_hands_and_loads_compiled(model, hands, tmp_path):
    xy, _ = hands
    X = features_from_xy(xy)
    directory = write_model_dir(model, tmp_path / "m", {"feature_version": FEATURE_VERSION, "name": "t"},
                                training_hands=xy)
    assert (directory / SUPPORT_HANDS_FILE).exists()
    loaded = load_directory(directory)
    assert isinstance(loaded._fast, _FastSVC)
    probe = X[::11][:40]
    assert np.array_equal(loaded.estimator[-1].support_vectors_, model[-1].support_vectors_)
    assert np.array_equal(loaded.estimator.decision_function(probe), model.decision_function(probe))
    assert [p.gesture for p in loaded.predict_many(probe)] == list(model.predict(probe))
