"""The one feature function: train/serve parity on a real photo, invariances, and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.datasets import read_landmark_csv
from model.features import (
    BLOCKS,
    FEATURE_VERSION,
    N_FEATURES,
    FeatureError,
    features_from_xy,
    landmark_features,
    mirror_xy,
    rotate_xy,
)


def _mediapipe_landmarks(photo: Path) -> tuple[np.ndarray, int, int]:
    """Real MediaPipe output for a real photo: (21, 3) float32 normalised landmarks, width, height."""
    from mediapipe.python.solutions import hands as mp_hands

    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    with mp_hands.Hands(static_image_mode=True, max_num_hands=1) as hands:
        result = hands.process(rgb)
    assert result.multi_hand_landmarks, f"MediaPipe found no hand in {photo}"
    points = np.array([(p.x, p.y, p.z) for p in result.multi_hand_landmarks[0].landmark], dtype=np.float32)
    return points, rgb.shape[1], rgb.shape[0]


def _write_hagrid_csv(path: Path, pixels_xyz: np.ndarray, label: str) -> None:
    header = [f"{axis}{i}" for i in range(1, 22) for axis in "xyz"] + ["label"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow([repr(float(v)) for v in pixels_xyz.reshape(-1)] + [label])


def _write_kp42_csv(path: Path, kp42: np.ndarray, label: str) -> None:
    """The shared kp42 file's layout: metadata columns, then x,y,z per landmark with z empty."""
    meta = ["source", "format", "kind", "label", "orig_label", "commit", "path"]
    header = meta + [f"{axis}{i}" for i in range(1, 22) for axis in "xyz"]
    cells: list[str] = []
    for x, y in kp42:
        cells += [repr(float(x)), repr(float(y)), ""]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow(["test", "kp42", "keypoint_csv", label, label, "-", "-", *cells])


@pytest.mark.parametrize("gesture", ["like", "peace", "four"])
def test_training_and_serving_features_are_identical(gestures_dir, tmp_path, gesture):
    normalized, width, height = _mediapipe_landmarks(gestures_dir / f"{gesture}.jpg")
    # Serving: straight from MediaPipe, with the frame size.
    served = landmark_features(normalized, width=width, height=height)
    # Training (a): the HaGRID landmark CSV a seed user has (pixel x,y + MediaPipe z).
    pixels = normalized.astype(np.float64) * np.array([width, height, 1.0])
    _write_hagrid_csv(tmp_path / "hagrid.csv", pixels, gesture)
    hagrid = read_landmark_csv(tmp_path / "hagrid.csv")
    # Training (b): kp42 (wrist-relative, max-abs normalised x,y; no z), as in the shared data set.
    rel = pixels[:, :2] - pixels[0, :2]
    _write_kp42_csv(tmp_path / "kp42.csv", rel / np.max(np.abs(rel)), gesture)
    kp42 = read_landmark_csv(tmp_path / "kp42.csv")

    assert hagrid.labels.tolist() == kp42.labels.tolist() == [gesture]
    from_hagrid = features_from_xy(hagrid.xy)[0]
    from_kp42 = features_from_xy(kp42.xy)[0]
    assert served.dtype == from_hagrid.dtype == from_kp42.dtype == np.float32
    assert served.shape == (N_FEATURES,)
    np.testing.assert_array_equal(served, from_hagrid)
    np.testing.assert_array_equal(served, from_kp42)
    # The single-sample and batch forms are one code path.
    np.testing.assert_array_equal(landmark_features(pixels), served)


def test_aspect_ratio_is_kept(gestures_dir):
    normalized, width, height = _mediapipe_landmarks(gestures_dir / "palm.jpg")
    right = landmark_features(normalized, width=width, height=height)
    squashed = landmark_features(normalized, width=2 * height, height=height)
    assert not np.allclose(right, squashed)


def test_invariant_to_position_and_scale():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 300, size=(21, 2))
    base = landmark_features(xy)
    moved = landmark_features(xy * 2.5 + np.array([40.0, -17.0]))
    np.testing.assert_allclose(base, moved, atol=1e-5)
    assert np.max(np.abs(base[:42])) == pytest.approx(1.0)
    assert base[0] == base[1] == 0.0  # the wrist is the origin


def _block(name: str) -> slice:
    start = 0
    for block, width in BLOCKS.items():
        if block == name:
            return slice(start, start + width)
        start += width
    raise KeyError(name)


def test_mirroring_flips_x_and_keeps_shape_features():
    xy = np.random.default_rng(2).uniform(0, 1, size=(21, 2))
    plain, mirrored = landmark_features(xy), landmark_features(mirror_xy(xy))
    flips = np.ones(N_FEATURES)
    for name in ("xy42", "dir40"):  # interleaved x,y: every x changes sign
        flips[_block(name)][0::2] = -1.0
    np.testing.assert_allclose(mirrored, plain * flips, atol=1e-5)
    # Bends and distances do not change at all.
    for name in ("cos15", "dist210"):
        np.testing.assert_allclose(mirrored[_block(name)], plain[_block(name)], atol=1e-6)


def test_bends_and_distances_do_not_change_with_the_hands_roll():
    xy = np.random.default_rng(4).uniform(0, 200, size=(21, 2))
    theta = np.deg2rad(70.0)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    plain, rolled = landmark_features(xy), landmark_features(xy @ rotation.T)
    # max-abs scaling is per axis-aligned box, so distances match up to one common factor
    ratio = rolled[_block("dist210")] / plain[_block("dist210")]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    np.testing.assert_allclose(rolled[_block("cos15")], plain[_block("cos15")], atol=1e-5)
    # ...while the orientation blocks do change: they tell `peace` from `peace_inverted`.
    assert not np.allclose(rolled[_block("dir40")], plain[_block("dir40")], atol=1e-3)
    assert not np.allclose(rolled[_block("xy42")], plain[_block("xy42")], atol=1e-3)


def test_rotation_turns_the_hand_about_its_wrist():
    xy = np.random.default_rng(5).uniform(0, 200, size=(2, 21, 2))
    turned = rotate_xy(xy, np.array([30.0, -90.0]))
    np.testing.assert_allclose(turned[:, 0], xy[:, 0])  # the wrist stays put
    before, after = xy[:, 1:] - xy[:, :1], turned[:, 1:] - turned[:, :1]
    np.testing.assert_allclose(np.linalg.norm(after, axis=2), np.linalg.norm(before, axis=2))
    angle = np.rad2deg(np.arctan2(after[..., 1], after[..., 0]) - np.arctan2(before[..., 1], before[..., 0]))
    np.testing.assert_allclose((angle + 180.0) % 360.0 - 180.0, [[30.0] * 20, [-90.0] * 20], atol=1e-9)
    # One angle for every hand; the bends of the turned hand are the hand's own.
    np.testing.assert_allclose(rotate_xy(xy, 30.0), rotate_xy(xy, np.array([30.0, 30.0])))
    np.testing.assert_allclose(features_from_xy(turned)[:, _block("cos15")],
                               features_from_xy(xy)[:, _block("cos15")], atol=1e-5)


@pytest.mark.parametrize(
    ("points", "kwargs"),
    [
        (np.zeros((20, 2)), {}),  # wrong landmark count
        (np.zeros((21, 4)), {}),
        (np.full((21, 2), np.nan), {}),
        (np.ones((21, 2)), {}),  # every landmark on the wrist
        (np.random.default_rng(3).uniform(size=(21, 3)), {"width": 640}),  # width without height
        (np.random.default_rng(3).uniform(size=(21, 3)), {"width": 0, "height": 480}),
    ],
)
def test_bad_landmarks_raise(points, kwargs):
    with pytest.raises(FeatureError):
        landmark_features(points, **kwargs)


def test_feature_version_names_the_layout():
    assert FEATURE_VERSION.split("/")[0] == "+".join(BLOCKS)
    assert N_FEATURES == sum(BLOCKS.values()) == 307
