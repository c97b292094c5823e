"""Video-like JPEG frames made from a still photo, for tests and benchmarks.

A webcam stream is never the same image twice: the hand moves a little, exposure drifts and every
frame is compressed again. `jittered_frames` imitates that from one labelled photo (small random
shifts, brightness changes, a fresh JPEG encoding per frame), deterministically from a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


def load_rgb(path: Path | str) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()


def jitter(
    rgb: np.ndarray, rng: np.random.Generator, max_shift: int = 6, max_brightness: float = 18.0
) -> np.ndarray:
    """One frame: the photo shifted by up to `max_shift` px (edges replicated) and brightened/darkened."""
    dx, dy = (int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    height, width = rgb.shape[:2]
    moved = cv2.warpAffine(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
    delta = float(rng.uniform(-max_brightness, max_brightness))
    return cv2.convertScaleAbs(moved, alpha=1.0, beta=delta)


def jittered_frames(
    photo: Path | str | np.ndarray,
    count: int,
    *,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    quality: int = 85,
    max_shift: int = 6,
    max_brightness: float = 18.0,
) -> list[bytes]:
    """`count` JPEG frames of `photo` (optionally resized to `size` = (width, height) first; use
    `webcam_view` instead to keep the hand's proportions)."""
    return list(
        iter_jittered_frames(
            photo,
            count,
            seed=seed,
            size=size,
            quality=quality,
            max_shift=max_shift,
            max_brightness=max_brightness,
        )
    )


def iter_jittered_frames(
    photo: Path | str | np.ndarray,
    count: int | None = None,
    *,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    quality: int = 85,
    max_shift: int = 6,
    max_brightness: float = 18.0,
) -> Iterator[bytes]:
    """Like `jittered_frames`, lazily; `count=None` runs forever."""
    rgb = load_rgb(photo) if not isinstance(photo, np.ndarray) else photo
    if size is not None:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    produced = 0
    while count is None or produced < count:
        yield encode_jpeg(jitter(rgb, rng, max_shift, max_brightness), quality)
        produced += 1


def webcam_view(rgb: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    """The photo scaled to fit width x height (aspect kept) and padded with its own edges, like a
    webcam picture with the hand in the middle."""
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    resized = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)))
    top = (height - resized.shape[0]) // 2
    left = (width - resized.shape[1]) // 2
    return cv2.copyMakeBorder(
        resized,
        top,
        height - resized.shape[0] - top,
        left,
        width - resized.shape[1] - left,
        cv2.BORDER_REPLICATE,
    )


def blank_jpeg(width: int = 320, height: int = 240, value: int = 128) -> bytes:
    """A uniform grey frame (no hand)."""
    return encode_jpeg(np.full((height, width, 3), value, dtype=np.uint8))


def corrupt_jpeg(valid: bytes) -> bytes:
    """Starts like a JPEG, then garbage: passes the magic check, fails to decode."""
    return valid[:3] + bytes(range(256)) * 4


def truncated_jpeg(valid: bytes, keep: float = 0.5) -> bytes:
    """The first `keep` fraction of a valid JPEG (a frame cut off in transit)."""
    return valid[: max(4, int(len(valid) * keep))]
