"""THE feature function: 21 hand landmarks -> one float32 vector. Training and serving both call it.

Every input format is first brought to pixel-proportional x,y (MediaPipe's normalised x,y times the
frame's width and height; HaGRID CSV rows are already pixels; kp42 rows are already normalised), then:

1. `xy42`: landmarks relative to the wrist, divided by the largest absolute coordinate (the kp42
   representation, so rows from every source line up exactly);
2. derived, rotation-invariant shape features computed from `xy42`: the cosine of the bend at every
   finger joint and the distances between fingertips (and from each fingertip to the wrist). They
   separate gestures that differ by which fingers are bent, whatever the hand's roll; `xy42` keeps
   the orientation that tells e.g. `like` from `dislike`. They were kept because they measured
   better on held-out data (docs/training.md).

Scaling to max-abs makes the vector independent of hand size and camera distance; z is not used (the
kp42 sources have none, and MediaPipe's z is noisy).
"""

from __future__ import annotations

import numpy as np

FEATURE_VERSION = "xy42+cos15+dist15/v1"
N_LANDMARKS = 21
WRIST = 0
FINGERTIPS = (4, 8, 12, 16, 20)
# Landmark chains per finger (MediaPipe Hands topology), wrist first.
_FINGERS = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20))
# Joints as (previous, joint, next): three per finger -> 15 bend angles.
_JOINTS = tuple((c[i - 1], c[i], c[i + 1]) for c in _FINGERS for i in range(1, 4))
# Distance pairs: every pair of fingertips (10) and wrist-to-fingertip (5) -> 15.
_PAIRS = tuple((a, b) for i, a in enumerate(FINGERTIPS) for b in FINGERTIPS[i + 1 :]) + tuple(
    (WRIST, t) for t in FINGERTIPS
)
N_FEATURES = 2 * N_LANDMARKS + len(_JOINTS) + len(_PAIRS)
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
    prev, joint, nxt = (np.array(idx) for idx in zip(*_JOINTS, strict=True))
    u = norm[:, prev] - norm[:, joint]
    v = norm[:, nxt] - norm[:, joint]
    denom = np.linalg.norm(u, axis=2) * np.linalg.norm(v, axis=2)
    # A zero-length bone (two landmarks on top of each other) gives cos 0 rather than NaN.
    cos = np.where(denom > _EPS, np.sum(u * v, axis=2) / np.maximum(denom, _EPS), 0.0)
    a, b = (np.array(idx) for idx in zip(*_PAIRS, strict=True))
    dist = np.linalg.norm(norm[:, a] - norm[:, b], axis=2)
    return np.concatenate([norm.reshape(len(norm), -1), cos, dist], axis=1).astype(np.float32)


def landmark_features(
    points: np.ndarray, *, width: int | float | None = None, height: int | float | None = None
) -> np.ndarray:
    """One hand's features, shape (N_FEATURES,) float32.

    `points`: (21, 2) or (21, 3) landmarks (z ignored). With `width` and `height`, they are MediaPipe
    normalised coordinates and are scaled to pixel-proportional x,y first (keeps the aspect ratio);
    otherwise they are already pixel (HaGRID CSV) or kp42 x,y.
    """
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
    return features_from_xy(xy[None])[0]


def mirror_xy(xy: np.ndarray) -> np.ndarray:
    """Flip x (left hand <-> right hand) of (..., 21, 2) landmarks: the training-time augmentation."""
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] = -out[..., 0]
    return out
