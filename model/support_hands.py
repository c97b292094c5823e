"""An SVM's support vectors kept as the hands they were computed from.

Every support vector of a `StandardScaler -> SVC` pipeline is a training row: the scaled feature
vector (`model.features`, 307 numbers) of one hand (21 landmarks x,y, 42 numbers). A model directory
stores the hands (`support_hands.npy`) and an estimator without its support vectors, and loading
recomputes them through the one feature function and the pipeline's own scaler. The recomputation is
exact (the same float64 landmarks give the same float32 features, held as float64 by libsvm). It is 42
numbers per support vector instead of 307; as bytes, ~40 % less than the LZMA-packed vectors (which
pack well: float32 values held as float64). It keeps every file of the committed default well under
5 MiB as its support vectors grow with more training rows (docs/decisions/0009-support-hands.md).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from model.features import N_FEATURES, N_LANDMARKS, features_from_xy, normalize_xy

SUPPORT_HANDS_FILE = "support_hands.npy"


class SupportHandsError(ValueError):
    """Stored hands that do not fit the estimator they are meant to complete."""


def _svm(estimator: Any) -> Any | None:
    """The pipeline's SVC (anything with `support_` and `support_vectors_`), or None."""
    steps = getattr(estimator, "steps", None)
    last = steps[-1][1] if steps else estimator
    return last if hasattr(last, "support_vectors_") and hasattr(last, "support_") else None


def split_support_hands(estimator: Any, training_hands: np.ndarray) -> tuple[Any, np.ndarray | None]:
    """(a copy of `estimator` without support vectors, their hands as (n_SV, 21, 2) float64), or
    (`estimator`, None) when it keeps no support vectors. `training_hands[i]` must be the landmarks of
    the i-th row the estimator was fitted on; checked by recomputing every support vector."""
    svm = _svm(estimator)
    if svm is None:
        return estimator, None
    hands = normalize_xy(np.asarray(training_hands, dtype=np.float64)[svm.support_])
    if not np.array_equal(_support_vectors(estimator, hands), svm.support_vectors_):
        raise SupportHandsError("the training hands do not reproduce the support vectors")
    stripped = copy.deepcopy(estimator)
    _svm(stripped).support_vectors_ = np.empty((0, N_FEATURES), dtype=np.float64)
    return stripped, hands


def restore_support_hands(estimator: Any, hands: np.ndarray) -> Any:
    """Put back the support vectors of `hands` into `estimator` (in place; returned for chaining)."""
    svm = _svm(estimator)
    if svm is None:
        raise SupportHandsError("support hands were stored for a model without support vectors")
    hands = np.asarray(hands)
    if hands.dtype != np.float64 or hands.shape != (len(svm.support_), N_LANDMARKS, 2):
        raise SupportHandsError(f"expected ({len(svm.support_)}, {N_LANDMARKS}, 2) float64 hands, "
                                f"got {hands.shape} {hands.dtype}")
    svm.support_vectors_ = _support_vectors(estimator, hands)
    return estimator


def _support_vectors(estimator: Any, hands: np.ndarray) -> np.ndarray:
    rows = features_from_xy(hands)
    steps = getattr(estimator, "steps", None)
    for _, step in (steps or [])[:-1]:
        rows = step.transform(rows)
    return np.ascontiguousarray(rows, dtype=np.float64)


def save(hands: np.ndarray, directory: Path) -> Path:
    path = Path(directory) / SUPPORT_HANDS_FILE
    np.save(path, hands, allow_pickle=False)
    return path


def load(directory: Path) -> np.ndarray | None:
    """The stored hands, or None when the directory keeps full support vectors in its model file."""
    path = Path(directory) / SUPPORT_HANDS_FILE
    if not path.exists():
        return None
    return np.load(path, allow_pickle=False)
