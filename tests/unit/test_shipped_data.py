"""The landmark CSVs shipped under data/: readable, labelled as their folder says, every source and
snapshot recorded in the folder's SOURCES.md, and no negative that is a recorded gesture."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from model.datasets import read_landmark_csv
from model.features import features_from_xy
from model.openset import NO_GESTURE
from model.train import (
    DEFAULT_HELDOUT_DIR,
    DEFAULT_NATURAL_DIR,
    DEFAULT_NEGATIVES_DIR,
    DEFAULT_TRAIN_ONLY_DIR,
)

GESTURE_CLASSES = {"call", "dislike", "fist", "four", "like", "mute", "ok", "one", "palm", "peace",
                   "peace_inverted", "rock", "stop", "stop_inverted", "three", "three2", "two_up",
                   "two_up_inverted"}
SHIPPED = sorted(DEFAULT_NEGATIVES_DIR.glob("*.csv")) + sorted(DEFAULT_TRAIN_ONLY_DIR.glob("*.csv"))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_csv_is_readable_labelled_and_recorded(path: Path) -> None:
    ds = read_landmark_csv(path)
    assert len(ds) > 0 and not ds.skipped, ds.skipped
    expected = {NO_GESTURE} if path.parent == DEFAULT_NEGATIVES_DIR else GESTURE_CLASSES
    assert set(ds.classes) <= expected
    record = (path.parent / "SOURCES.md").read_text(encoding="utf-8")
    assert f"`{path.name}`" in record
    rows = _rows(path)
    for source in {r["source"] for r in rows}:  # a section per recorder, naming the snapshot read
        assert f"### {source}" in record or f"`{source}`" in record, f"{source} has no record"
    for commit in {r["commit"] for r in rows}:
        assert len(commit) == 40 and commit[:7] in record, f"{commit} is not recorded"


def test_no_negative_is_a_recorded_gesture(landmarks_csv) -> None:
    gestures = [landmarks_csv, *sorted(DEFAULT_TRAIN_ONLY_DIR.glob("*.csv"))]
    seen = {row.tobytes() for p in gestures for row in features_from_xy(read_landmark_csv(p).xy)}
    negatives = np.vstack([features_from_xy(read_landmark_csv(p).xy)
                           for p in sorted(DEFAULT_NEGATIVES_DIR.glob("*.csv"))])
    assert len(negatives) > 0
    assert not any(row.tobytes() in seen for row in negatives)


HAGRID_PEOPLE = sorted(DEFAULT_NATURAL_DIR.glob("*.csv")) + sorted(DEFAULT_HELDOUT_DIR.glob("*.csv"))


@pytest.mark.parametrize("path", HAGRID_PEOPLE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_hagrid_people_files_are_recorded_and_grouped_by_person(path: Path) -> None:
    """data/natural/ (the no_gesture class) and data/heldout/ (evaluation only): HaGRID annotation
    rows whose `source` is HaGRID's person id, so they can be split and held out by person."""
    ds = read_landmark_csv(path)
    assert len(ds) > 1000 and not ds.skipped, ds.skipped
    expected = {NO_GESTURE} if path.parent == DEFAULT_NATURAL_DIR else GESTURE_CLASSES
    assert set(ds.classes) <= expected
    assert all(s.startswith("hagrid-user:") for s in ds.sources.tolist())
    record = (path.parent / "SOURCES.md").read_text(encoding="utf-8")
    assert f"`{path.name}`" in record
    for commit in {r["commit"] for r in _rows(path)}:
        assert len(commit) == 40 and commit in record


def test_held_out_people_are_never_training_rows() -> None:
    held = read_landmark_csv(DEFAULT_HELDOUT_DIR / "hagrid_test_gestures_kp42.csv")
    train = [p for p in sorted(DEFAULT_TRAIN_ONLY_DIR.glob("*.csv"))]
    seen = {row.tobytes() for p in train for row in features_from_xy(read_landmark_csv(p).xy)}
    assert not any(row.tobytes() in seen for row in features_from_xy(held.xy))
