"""Train/validation/test splits that do not leak, and the training-time augmentation.

* Exact-duplicate feature rows are collapsed to one before splitting, so the same vector can never be
  on both sides; a vector seen with two different labels is dropped entirely (counted).
* Splits are stratified by label with a fixed seed: the same data always gives the same test split,
  which is what lets a new model be compared with the current champion.
* Augmentation (mirroring, x -> -x: a left hand as a right hand; small in-plane rotations) is applied
  to training rows only, after the split.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from model.datasets import LandmarkDataset
from model.features import features_from_xy, mirror_xy, rotate_xy

SPLIT_SEED = 20240607


@dataclass
class Prepared:
    """Feature rows after de-duplication, with their labels and sources."""

    X: np.ndarray  # (N, n_features) float32
    y: np.ndarray  # (N,) str
    xy: np.ndarray  # (N, 21, 2) the landmarks, for mirroring
    sources: np.ndarray
    duplicates: int  # rows dropped as exact copies of a kept row
    conflicting: int  # rows dropped because the same vector carried different labels
    train_only: int = 0  # the last rows are train-only (`add_train_only`): never validation or test

    @property
    def split_sources(self) -> list[str]:
        """Sources of the rows that are split (train-only rows are always trained on)."""
        return sorted(set(self.sources[: len(self.y) - self.train_only].tolist()))


@dataclass
class Split:
    train: np.ndarray  # indices into Prepared
    val: np.ndarray
    test: np.ndarray


def prepare(dataset: LandmarkDataset) -> Prepared:
    X = features_from_xy(dataset.xy)
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, row in enumerate(X):
        groups[row.tobytes()].append(i)
    keep: list[int] = []
    duplicates = conflicting = 0
    for rows in groups.values():
        labels = {dataset.labels[i] for i in rows}
        if len(labels) > 1:
            conflicting += len(rows)
            continue
        keep.append(rows[0])
        duplicates += len(rows) - 1
    idx = np.array(sorted(keep), dtype=np.intp)
    return Prepared(
        X[idx], dataset.labels[idx], dataset.xy[idx], dataset.sources[idx], duplicates, conflicting
    )


def split(y: np.ndarray, val_size: float = 0.15, test_size: float = 0.15, seed: int = SPLIT_SEED) -> Split:
    """Stratified train/val/test indices."""
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_size / (1.0 - test_size), stratify=y[rest], random_state=seed
    )
    return Split(np.sort(train), np.sort(val), np.sort(test))


# Beyond this a turned hand starts to look like another class (`like` is `dislike` turned by 180).
MAX_ROTATION_DEGREES = 45.0


@dataclass(frozen=True)
class Augmentation:
    """How training rows are multiplied before a fit: every row, its x-mirror (the other hand), and
    `rotated_copies` copies of both turned about the wrist by an angle drawn uniformly within
    +-`max_degrees` (hands are held a little tilted, and a new player's tilt is not the recorders').
    The angles come from a fixed seed, so the same data always gives the same rows."""

    rotated_copies: int = 1
    max_degrees: float = 15.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rotated_copies < 0:
            raise ValueError(f"rotated copies must be >= 0, got {self.rotated_copies}")
        if not 0.0 <= self.max_degrees <= MAX_ROTATION_DEGREES:
            raise ValueError(f"rotation must be within 0..{MAX_ROTATION_DEGREES:g} degrees, "
                             f"got {self.max_degrees}")

    @property
    def factor(self) -> int:
        """Training rows per original row."""
        return 2 * (1 + self.rotated_copies)

    def expand(self, xy: np.ndarray) -> np.ndarray:
        """(N, 21, 2) -> (factor * N, 21, 2): the rows, their mirrors, then each rotated copy and its
        mirror."""
        rng = np.random.default_rng(self.seed)
        parts = [xy, mirror_xy(xy)]
        for _ in range(self.rotated_copies):
            turned = rotate_xy(xy, rng.uniform(-self.max_degrees, self.max_degrees, len(xy)))
            parts += [turned, mirror_xy(turned)]
        return np.concatenate(parts)

    def params(self) -> dict[str, float | int]:
        """As logged with a run (and read back by `retrain`, see `from_params`)."""
        return {"mirrored_training_rows": True, "rotated_copies": self.rotated_copies,
                "max_rotation_degrees": self.max_degrees}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Augmentation:
        """The augmentation a run logged; runs from before rotations were mirror-only."""
        if "rotated_copies" not in params:
            return MIRROR_ONLY
        return cls(int(params["rotated_copies"]), float(params.get("max_rotation_degrees", 0.0)))


MIRROR_ONLY = Augmentation(rotated_copies=0)
DEFAULT_AUGMENTATION = Augmentation()


def augmented(data: Prepared, index: np.ndarray, aug: Augmentation) -> tuple[np.ndarray, np.ndarray]:
    """Training rows `index` multiplied by `aug` (features recomputed through the one feature function)."""
    extra = features_from_xy(aug.expand(data.xy[index])[len(index) :])
    return np.vstack([data.X[index], extra]), np.tile(data.y[index], aug.factor)


def as_recorded(rows: np.ndarray, hands: int) -> np.ndarray:
    """Of `hands` hands' augmented rows (features or labels), the hands as recorded and their mirrors:
    `Augmentation.expand` puts those first. The open-set head and drift take them as reference."""
    return rows[: 2 * hands]


def with_mirrored(data: Prepared, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows `index` plus their x-mirrored copies."""
    return augmented(data, index, MIRROR_ONLY)


def mirrored_features(data: Prepared, index: np.ndarray) -> np.ndarray:
    return features_from_xy(mirror_xy(data.xy[index]))


@dataclass
class TrainOnlyReport:
    """What became of rows offered for training only."""

    added: int
    duplicates: int  # the same feature vector as a row already in the data (any split) or offered twice
    unknown_label: int  # a label the split data does not have (a class cannot be learned from extras)
    conflicting: int


def add_train_only(
    data: Prepared, sp: Split, extra: LandmarkDataset
) -> tuple[Prepared, Split, TrainOnlyReport]:
    """Append `extra` rows to the training split only, so validation and test stay exactly as `split`
    made them (comparable with every earlier model). A row whose feature vector is already in the data,
    in any split, is dropped: an exact copy of a test row must never be trained on."""
    extra_data = prepare(extra)
    seen = {row.tobytes() for row in data.X}
    known_labels = set(data.y.tolist())
    keep, duplicates, unknown = [], 0, 0
    for i, row in enumerate(extra_data.X):
        if row.tobytes() in seen:
            duplicates += 1
        elif extra_data.y[i] not in known_labels:
            unknown += 1
        else:
            keep.append(i)
    idx = np.array(keep, dtype=np.intp)
    merged = Prepared(
        np.vstack([data.X, extra_data.X[idx]]),
        np.concatenate([data.y, extra_data.y[idx]]),
        np.concatenate([data.xy, extra_data.xy[idx]]),
        np.concatenate([data.sources, extra_data.sources[idx]]),
        data.duplicates,
        data.conflicting,
        data.train_only + len(idx),
    )
    train = np.concatenate([sp.train, np.arange(len(data.y), len(merged.y), dtype=sp.train.dtype)])
    report = TrainOnlyReport(len(idx), duplicates + extra_data.duplicates, unknown, extra_data.conflicting)
    return merged, Split(train, sp.val, sp.test), report
