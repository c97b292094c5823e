"""THE feature function: 21 hand landmarks -> one float32 vector. Training and serving both call it.

Every input format is first brought to pixel-proportional x,y (MediaPipe's normalised x,y times the
frame's width and height; HaGRID CSV rows are already pixels; kp42 rows are already normalised), then:

1. `xy42`: landmarks relative to the wrist, divided by the largest absolute coordinate (the kp42
   representation, so rows from every source line up exactly);
2. derived shape features computed from `xy42`:
   * `cos15`: the cosine of the bend at every finger joint;
   * `dist210`: the distance between every pair of landmarks (how spread, curled, touching);
   * `dir40`: the unit direction of each of the 20 bones (which way each finger segment points).
   Bends and distances do not change with the hand's roll; `xy42` and the bone directions keep the
   orientation that tells e.g. `like` from `dislike` and `peace` from `peace_inverted`. Each block was
   kept because it measured better on the validation split and leave-one-source-out; a block that
   did not (the hand rotated upright) was left out (docs/training.md,
   docs/decisions/0006-richer-features.md).

Scaling to max-abs makes the vector independent of hand size and camera distance; z is not used (the
kp42 sources have none, and MediaPipe's z is noisy).
"""

from __future__ import annotations

import numpy as np

FEATURE_VERSION = "xy42+cos15+dist210+dir40/v2"
N_LANDMARKS = 21
WRIST = 0
FINGERTIPS = (4, 8, 12, 16, 20)
# Landmark chains per finger (MediaPipe Hands topology), wrist first.
_FINGERS = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20))
# Joints as (previous, joint, next): three per finger -> 15 bend angles.
_JOINTS = tuple((c[i - 1], c[i], c[i + 1]) for c in _FINGERS for i in range(1, 4))
# Distance pairs: every pair of landmarks -> 210.
_PAIRS = tuple((a, b) for a in range(N_LANDMARKS) for b in range(a + 1, N_LANDMARKS))
# Bones: consecutive landmarks along each finger -> 20.
_BONES = tuple((c[i], c[i + 1]) for c in _FINGERS for i in range(4))
# Column blocks of the vector, in order (the ablation and drift monitoring name columns by them).
BLOCKS = {"xy42": 2 * N_LANDMARKS, "cos15": len(_JOINTS), "dist210": len(_PAIRS),
          "dir40": 2 * len(_BONES)}
N_FEATURES = sum(BLOCKS.values())
# The same pairs as index arrays, built once: features are computed for every frame.
_JOINT_IDX = tuple(np.array(idx) for idx in zip(*_JOINTS, strict=True))
_PAIR_IDX = tuple(np.array(idx) for idx in zip(*_PAIRS, strict=True))
_BONE_IDX = tuple(np.array(idx) for idx in zip(*_BONES, strict=True))
_EPS = 1e-9


class FeatureError(ValueError):
    """Landmarks that cannot be turned into features (wrong shape, NaN/inf, all points at the wrist)."""


def invalid_reason(xy: np.ndarray) -> str | None:
    """Why a (21, 2) array of x,y cannot be used, or None when it can (used by the dataset readers)."""
    if xy.shape != (N_LANDMARKS, 2):
        return f"expected {N_LANDMARKS} landmarks with x,y, got shape {xy.shape}"
    if not np.all(np.isfinite(xy)):
        return "non-finite coordinate"
    if np.max(np.abs(xy - xy[WRIST])) <= _EPS:
        return "degenerate hand (all landmarks at the wrist)"
    return None


def normalize_xy(xy: np.ndarray) -> np.ndarray:
    """(N, 21, 2) pixel-proportional x,y -> (N, 21, 2) float64 wrist-relative, max-abs normalised."""
    rel = xy - xy[:, WRIST : WRIST + 1, :]
    scale = np.max(np.abs(rel.reshape(len(rel), -1)), axis=1)
    if np.any(scale <= _EPS):
        raise FeatureError("degenerate hand (all landmarks at the wrist)")
    return rel / scale[:, None, None]


def features_from_xy(xy: np.ndarray) -> np.ndarray:
    """(N, 21, 2) pixel-proportional (or kp42) x,y -> (N, N_FEATURES) float32. The batch form."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[1:] != (N_LANDMARKS, 2):
        raise FeatureError(f"expected (N, {N_LANDMARKS}, 2) landmarks, got shape {xy.shape}")
    if not np.all(np.isfinite(xy)):
        raise FeatureError("non-finite landmark coordinate")
    norm = normalize_xy(xy)
    n = len(norm)
    prev, joint, nxt = _JOINT_IDX
    u = norm[:, prev] - norm[:, joint]
    v = norm[:, nxt] - norm[:, joint]
    denom = np.linalg.norm(u, axis=2) * np.linalg.norm(v, axis=2)
    # A zero-length bone (two landmarks on top of each other) gives cos 0 rather than NaN.
    cos = np.where(denom > _EPS, np.sum(u * v, axis=2) / np.maximum(denom, _EPS), 0.0)
    a, b = _PAIR_IDX
    dist = np.linalg.norm(norm[:, a] - norm[:, b], axis=2)
    start, end = _BONE_IDX
    bones = norm[:, end] - norm[:, start]
    bones = bones / np.maximum(np.linalg.norm(bones, axis=2, keepdims=True), _EPS)
    return np.concatenate([norm.reshape(n, -1), cos, dist, bones.reshape(n, -1)], axis=1).astype(np.float32)


def landmark_features(
    points: np.ndarray, *, width: int | float | None = None, height: int | float | None = None
) -> np.ndarray:
    """One hand's features, shape (N_FEATURES,) float32.

    `points`: (21, 2) or (21, 3) landmarks (z ignored). With `width` and `height`, they are MediaPipe
    normalised coordinates and are scaled to pixel-proportional x,y first (keeps the aspect ratio);
    otherwise they are already pixel (HaGRID CSV) or kp42 x,y.
    """
    return features_from_xy(proportional_xy(points, width=width, height=height)[None])[0]


def proportional_xy(
    points: np.ndarray, *, width: int | float | None = None, height: int | float | None = None
) -> np.ndarray:
    """(21, 2) float64 pixel-proportional x,y of one hand's landmarks (see `landmark_features`)."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != N_LANDMARKS or arr.shape[1] not in (2, 3):
        raise FeatureError(f"expected ({N_LANDMARKS}, 2) or ({N_LANDMARKS}, 3) landmarks, got {arr.shape}")
    xy = arr[:, :2]
    if (width is None) != (height is None):
        raise FeatureError("give both width and height, or neither")
    if width is not None and height is not None:
        if width <= 0 or height <= 0:
            raise FeatureError(f"frame size must be positive, got {width}x{height}")
        xy = xy * np.array([float(width), float(height)])
    return xy


def usable_features(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Many hands' (N, 21, 2) pixel-proportional x,y -> (features of the usable ones (M, N_FEATURES),
    which are usable (N,) bool). One computation for the batch; a hand that `features_from_xy` would
    refuse (a non-finite coordinate, every point at the wrist) is left out instead of failing all."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, N_LANDMARKS, 2)
    finite = np.all(np.isfinite(xy), axis=(1, 2))
    rel = np.where(finite[:, None, None], xy - xy[:, WRIST : WRIST + 1, :], 0.0)
    usable = finite & (np.max(np.abs(rel), axis=(1, 2), initial=0.0) > _EPS)
    if not usable.any():
        return np.zeros((0, N_FEATURES), dtype=np.float32), usable
    return features_from_xy(xy[usable]), usable


def mirror_xy(xy: np.ndarray) -> np.ndarray:
    """Flip x (left hand <-> right hand) of (..., 21, 2) landmarks: the training-time augmentation."""
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] = -out[..., 0]
    return out


def rotate_xy(xy: np.ndarray, degrees: np.ndarray | float) -> np.ndarray:
    """Turn (N, 21, 2) landmarks about their wrist in the image plane by `degrees` (one angle, or one
    per hand): a hand held a little tilted, the training-time augmentation next to mirroring."""
    arr = np.asarray(xy, dtype=np.float64)
    theta = np.deg2rad(np.broadcast_to(np.asarray(degrees, dtype=np.float64), arr.shape[:1]))[:, None]
    wrist = arr[:, WRIST : WRIST + 1, :]
    rel = arr - wrist
    cos, sin = np.cos(theta), np.sin(theta)
    turned = np.stack([rel[..., 0] * cos - rel[..., 1] * sin, rel[..., 0] * sin + rel[..., 1] * cos], axis=-1)
    return turned + wrist
