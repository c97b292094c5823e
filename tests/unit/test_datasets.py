"""Landmark CSV readers: both formats, invalid rows reported and skipped, leak-free splits."""

from __future__ import annotations

import numpy as np
import pytest

from model.datasets import DatasetError, read_datasets, read_landmark_csv
from model.features import features_from_xy, rotate_xy
from model.splits import MIRROR_ONLY, Augmentation, add_train_only, augmented, prepare, split, with_mirrored

HEADER = ",".join(f"{a}{i}" for i in range(1, 22) for a in "xyz") + ",label"


def _row(xy: np.ndarray, label: str, z: str = "0.0") -> str:
    return ",".join(f"{x!r},{y!r},{z}" for x, y in xy.tolist()) + f",{label}"


@pytest.fixture
def hand() -> np.ndarray:
    return np.random.default_rng(0).uniform(100, 400, size=(21, 2))


def test_invalid_rows_are_counted_and_skipped(tmp_path, hand):
    good = _row(hand, "palm")
    cells = good.split(",")
    missing = ",".join(["", *cells[1:]])
    text = ",".join(["abc", *cells[1:]])
    nan = ",".join(["nan", *cells[1:]])
    inf = ",".join(["inf", *cells[1:]])
    no_label = ",".join([*cells[:-1], ""])
    short = ",".join(cells[:30])
    degenerate = _row(np.ones((21, 2)), "fist")
    lines = [HEADER, good, missing, text, nan, inf, no_label, short, degenerate, "", _row(hand + 5, "Fist ")]
    path = tmp_path / "hagrid.csv"
    path.write_text("\n".join(lines) + "\n")

    ds = read_landmark_csv(path)

    assert len(ds) == 2
    assert ds.labels.tolist() == ["palm", "fist"]  # lower-cased, stripped
    np.testing.assert_array_equal(ds.xy[0], hand)
    assert dict(ds.skipped) == {
        "missing value": 1,
        "non-numeric value": 1,
        "non-finite value": 2,
        "missing label": 1,
        "too few columns": 1,
        "degenerate hand (all landmarks at the wrist)": 1,
    }
    assert set(ds.sources.tolist()) == {"hagrid.csv"}


def test_a_file_without_landmark_columns_is_rejected(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b,label\n1,2,palm\n")
    with pytest.raises(DatasetError, match="missing columns"):
        read_landmark_csv(path)


def test_a_file_with_no_usable_rows_is_rejected(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text(HEADER + "\n" + _row(np.ones((21, 2)), "palm") + "\n")
    with pytest.raises(DatasetError, match="no usable rows"):
        read_landmark_csv(path)


def test_shared_kp42_file(landmarks_csv):
    ds = read_landmark_csv(landmarks_csv)
    assert len(ds) == 15254
    assert len(ds.classes) == 18
    assert not ds.skipped
    assert len(set(ds.sources.tolist())) == 13
    # kp42 rows are wrist-relative and max-abs normalised already.
    assert np.all(ds.xy[:, 0] == 0.0)
    np.testing.assert_allclose(np.abs(ds.xy).reshape(len(ds), -1).max(axis=1), 1.0)
    assert len(ds.fingerprint()) == 64


def test_several_files_concatenate(tmp_path, hand):
    for name, label in (("a.csv", "palm"), ("b.csv", "fist")):
        (tmp_path / name).write_text(HEADER + "\n" + _row(hand, label) + "\n")
    ds = read_datasets([tmp_path / "a.csv", tmp_path / "b.csv"])
    assert ds.labels.tolist() == ["palm", "fist"]
    assert len(ds.files) == 2


def test_duplicates_collapse_and_conflicts_drop(tmp_path, hand):
    other = hand + np.random.default_rng(5).normal(0, 20, size=hand.shape)
    rows = [
        _row(hand, "palm"),
        _row(hand * 2 + 3, "palm"),  # same features after normalisation: a duplicate
        _row(other, "palm"),
        _row(other, "stop"),  # same vector, other label: both dropped
    ]
    path = tmp_path / "dups.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    data = prepare(read_landmark_csv(path))
    assert (len(data.y), data.duplicates, data.conflicting) == (1, 1, 2)


def test_split_is_stratified_disjoint_and_repeatable(landmarks_csv):
    data = prepare(read_landmark_csv(landmarks_csv))
    a, b = split(data.y), split(data.y)
    np.testing.assert_array_equal(a.test, b.test)
    parts = [set(a.train.tolist()), set(a.val.tolist()), set(a.test.tolist())]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) == len(data.y)
    # No feature vector appears on two sides.
    train_rows = {row.tobytes() for row in data.X[a.train]}
    assert not any(row.tobytes() in train_rows for row in data.X[a.test])
    for label in np.unique(data.y):  # every class in every split, in proportion
        share = np.mean(data.y == label)
        assert np.mean(data.y[a.test] == label) == pytest.approx(share, abs=0.01)
    X, y = with_mirrored(data, a.train[:10])
    assert X.shape == (20, data.X.shape[1]) and (y[:10] == y[10:]).all()
    np.testing.assert_allclose(X[10:, 0:42:2], -X[:10, 0:42:2], atol=1e-6)


def test_augmentation_adds_mirrors_and_small_rotations_of_training_rows(landmarks_csv):
    data = prepare(read_landmark_csv(landmarks_csv))
    index = split(data.y).train[:12]
    aug = Augmentation(rotated_copies=2, max_degrees=20.0)
    X, y = augmented(data, index, aug)
    assert aug.factor == 6 and X.shape == (6 * 12, data.X.shape[1])
    np.testing.assert_array_equal(y, np.tile(data.y[index], 6))
    np.testing.assert_array_equal(X[:12], data.X[index])  # the rows themselves come first, untouched
    np.testing.assert_array_equal(X[:24], with_mirrored(data, index)[0])
    # Every rotated copy is its row turned by some angle within the limit (the mirrors of those too).
    xy, expanded = data.xy[index], aug.expand(data.xy[index])
    for copy in expanded[24], expanded[48]:  # the first row of each rotated block
        before, after = xy[0, 1:] - xy[0, 0], copy[1:] - copy[0]
        angle = np.rad2deg(np.arctan2(after[:, 1], after[:, 0]) - np.arctan2(before[:, 1], before[:, 0]))
        angle = (angle + 180.0) % 360.0 - 180.0
        assert np.ptp(angle) < 1e-6 and 0.0 < abs(angle[0]) <= 20.0
        np.testing.assert_allclose(features_from_xy(copy[None]),
                                   features_from_xy(rotate_xy(xy[:1], angle[0])), atol=1e-5)
    # Fixed seed: the same rows every time; mirror-only adds no rotation.
    np.testing.assert_array_equal(augmented(data, index, aug)[0], X)
    assert augmented(data, index, MIRROR_ONLY)[0].shape[0] == 24
    with pytest.raises(ValueError, match="rotation"):
        Augmentation(max_degrees=90.0)
    with pytest.raises(ValueError, match="copies"):
        Augmentation(rotated_copies=-1)
    # What a run logs reads back; runs from before rotations were mirror-only.
    logged = {k: str(v) for k, v in aug.params().items()}
    assert Augmentation.from_params(logged) == aug
    assert Augmentation.from_params({"mirrored_training_rows": "True"}) == MIRROR_ONLY


def test_train_only_rows_join_training_and_leave_validation_and_test_alone(tmp_path, landmarks_csv):
    data = prepare(read_landmark_csv(landmarks_csv))
    sp = split(data.y)
    rng = np.random.default_rng(1)
    new = [data.xy[i] + rng.normal(0, 0.02, size=(21, 2)) for i in sp.train[:5]]
    rows = [_row(xy, str(data.y[i])) for xy, i in zip(new, sp.train[:5], strict=True)]
    rows += [_row(data.xy[sp.test[0]] * 300 + 7, str(data.y[sp.test[0]])),  # a test row, rescaled
             _row(data.xy[sp.val[0]] + rng.normal(0, 0.02, size=(21, 2)), "a_class_nobody_else_has"),
             _row(new[0], str(data.y[sp.train[0]]))]  # offered twice
    path = tmp_path / "extra.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    merged, msp, report = add_train_only(data, sp, read_landmark_csv(path))
    assert (report.added, report.duplicates, report.unknown_label) == (5, 2, 1)
    assert merged.train_only == 5 and merged.split_sources == data.split_sources
    np.testing.assert_array_equal(msp.val, sp.val)
    np.testing.assert_array_equal(msp.test, sp.test)
    np.testing.assert_array_equal(merged.X[: len(data.y)], data.X)
    added = msp.train[len(sp.train):]
    assert added.tolist() == list(range(len(data.y), len(data.y) + 5))
    assert merged.y[added].tolist() == data.y[sp.train[:5]].tolist()
    test_rows = {row.tobytes() for row in merged.X[msp.test]}
    assert not any(row.tobytes() in test_rows for row in merged.X[msp.train])
