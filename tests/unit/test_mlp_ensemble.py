"""The MLP ensemble family: trained like any candidate, saved pickle-free and slim, served by the
compiled path with the same probabilities as scikit-learn (docs/training.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from model.classifier import GestureClassifier, ModelInfo, _FastMLP, load_directory
from model.datasets import read_landmark_csv
from model.estimators import Candidate, build
from model.features import FEATURE_VERSION, features_from_xy
from model.openset import OpenSetHead
from model.registry import write_model_dir
from tests.support.served import assert_serves_what_scikit_learn_answers

# Real hands shipped in the repository (HaGRID's subsample annotations, data/gestures/SOURCES.md).
HANDS = Path(__file__).resolve().parents[2] / "data" / "gestures" / "hagrid_subsample_annotations_kp42.csv"


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    ds = read_landmark_csv(HANDS)
    return features_from_xy(ds.xy), ds.labels


@pytest.fixture(scope="module")
def ensemble(rows):
    X, y = rows
    candidate = Candidate("mlp_ensemble", {"hidden": "32", "alpha": 1e-3, "members": 3})
    return build(candidate).fit(X, y)


def _info() -> ModelInfo:
    return ModelInfo("test", "1", None, "test", FEATURE_VERSION)


def test_members_differ_and_their_mean_is_the_answer(ensemble, rows):
    X, _ = rows
    members = ensemble.steps[-1][1].estimators_
    assert len(members) == 3
    Z = ensemble.steps[0][1].transform(X[:50])
    each = np.stack([m.predict_proba(Z) for m in members])
    assert not np.allclose(each[0], each[1])  # other seeds, other weights
    np.testing.assert_allclose(ensemble.predict_proba(X[:50]), each.mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("beta", [None, 0.7])
def test_the_compiled_path_serves_what_scikit_learn_answers(ensemble, rows, beta):
    X, _ = rows
    head = None
    if beta is not None:
        head = dataclasses.replace(OpenSetHead.fit_reference(ensemble.steps[0][1].transform(X)), beta=beta,
                                   threshold=float("inf"))
    clf = GestureClassifier(ensemble, _info(), head)
    assert isinstance(clf._fast, _FastMLP)
    batch = X[:64]
    assert_serves_what_scikit_learn_answers(clf, batch)


def test_a_saved_ensemble_is_slim_and_loads_with_the_trusted_types(ensemble, rows, tmp_path):
    import skops.io

    X, _ = rows
    before = len(skops.io.dumps(ensemble))
    directory = write_model_dir(ensemble, tmp_path / "m", {"feature_version": FEATURE_VERSION, "name": "t"})
    member = ensemble.steps[-1][1].estimators_[0]
    assert not hasattr(member, "_optimizer") and not hasattr(member, "_best_coefs")
    assert len(skops.io.dumps(ensemble)) < 0.8 * before  # the optimiser's moments are gone
    loaded = load_directory(directory)
    assert isinstance(loaded._fast, _FastMLP)
    np.testing.assert_allclose(loaded.predict_proba(X[:20]), ensemble.predict_proba(X[:20]), rtol=1e-6)
