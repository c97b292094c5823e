"""An SVM's support vectors stored as the hands they came from: exact, smaller, and refused when wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model.classifier import MODEL_FILE, ModelLoadError, load_directory
from model.datasets import read_landmark_csv
from model.estimators import Candidate, build
from model.features import FEATURE_VERSION, features_from_xy
from model.registry import write_model_dir
from model.splits import DEFAULT_AUGMENTATION
from model.support_hands import (
    SUPPORT_HANDS_FILE,
    SupportHandsError,
    restore_support_hands,
    split_support_hands,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def fitted(landmarks_csv):
    """An rbf SVM fitted on 40 real hands per class, each with its mirror and a rotated copy."""
    ds = read_landmark_csv(landmarks_csv)
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(np.flatnonzero(ds.labels == c))[:40] for c in np.unique(ds.labels)])
    hands = DEFAULT_AUGMENTATION.expand(ds.xy[idx])
    labels = np.tile(ds.labels[idx], DEFAULT_AUGMENTATION.factor)
    model = build(Candidate("svm_rbf", {"C": 30, "gamma": "scale"})).fit(features_from_xy(hands), labels)
    probe = features_from_xy(ds.xy[rng.choice(len(ds), 300, replace=False)])
    return model, hands, labels, probe


def _metadata() -> dict:
    return {"name": "test", "feature_version": FEATURE_VERSION}


def test_the_hands_rebuild_the_exact_support_vectors(fitted):
    model, hands, _, probe = fitted
    stripped, support = split_support_hands(model, hands)
    assert support.shape == (len(model[-1].support_), 21, 2)
    assert stripped[-1].support_vectors_.size == 0 and model[-1].support_vectors_.size > 0  # a copy
    restored = restore_support_hands(stripped, support)
    assert np.array_equal(restored[-1].support_vectors_, model[-1].support_vectors_)
    assert np.array_equal(restored.decision_function(probe), model.decision_function(probe))


def test_hands_that_are_not_the_training_rows_are_refused(fitted):
    model, hands, *_ = fitted
    with pytest.raises(SupportHandsError, match="do not reproduce"):
        split_support_hands(model, hands[::-1])


def test_a_model_without_support_vectors_is_stored_whole(fitted, tmp_path):
    _, hands, labels, probe = fitted
    knn = build(Candidate("knn", {"n_neighbors": 3})).fit(features_from_xy(hands), labels)
    stripped, support = split_support_hands(knn, hands)
    assert stripped is knn and support is None
    directory = tmp_path / "knn"
    directory.mkdir()
    (directory / SUPPORT_HANDS_FILE).write_bytes(b"left over from an earlier model")
    write_model_dir(knn, directory, _metadata(), training_hands=hands)
    assert not (directory / SUPPORT_HANDS_FILE).exists()
    assert np.array_equal(load_directory(directory).estimator.predict(probe), knn.predict(probe))


def test_a_model_directory_with_hands_is_smaller_and_predicts_the_same(fitted, tmp_path):
    model, hands, _, probe = fitted
    whole = write_model_dir(model, tmp_path / "whole", _metadata())
    compact = write_model_dir(model, tmp_path / "compact", _metadata(), training_hands=hands)
    assert not (whole / SUPPORT_HANDS_FILE).exists() and (compact / SUPPORT_HANDS_FILE).exists()
    size = {d: sum(f.stat().st_size for f in d.iterdir() if f.name != "metadata.json")
            for d in (whole, compact)}
    assert size[compact] < 0.8 * size[whole]  # 42 numbers per support vector instead of 307
    loaded = load_directory(compact)
    whole_model = load_directory(whole)
    assert np.array_equal(loaded.predict_proba(probe), whole_model.predict_proba(probe))
    assert [loaded.predict(row) for row in probe[:20]] == [whole_model.predict(row) for row in probe[:20]]


@pytest.mark.parametrize("damage", ["shape", "dtype", "pickle", "missing model"])
def test_damaged_hands_fail_loading_clearly(fitted, tmp_path, damage):
    model, hands, labels, _ = fitted
    directory = write_model_dir(model, tmp_path / "model", _metadata(), training_hands=hands)
    path: Path = directory / SUPPORT_HANDS_FILE
    stored = np.load(path)
    if damage == "shape":
        np.save(path, stored[:-1])
    elif damage == "dtype":
        np.save(path, stored.astype(np.float32))
    elif damage == "pickle":  # an object array needs pickle to load: refused
        np.save(path, np.array([{"not": "landmarks"}], dtype=object), allow_pickle=True)
    else:  # hands beside a model that has no support vectors to restore
        knn = build(Candidate("knn", {"n_neighbors": 3})).fit(features_from_xy(hands), labels)
        shutil.copy(path, tmp_path / "hands.npy")
        write_model_dir(knn, directory, _metadata())
        shutil.copy(tmp_path / "hands.npy", path)
    with pytest.raises(ModelLoadError, match="cannot restore the support vectors"):
        load_directory(directory)
    assert json.loads((directory / "metadata.json").read_text())["name"] == "test"
    assert (directory / MODEL_FILE).exists()
