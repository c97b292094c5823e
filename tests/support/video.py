"""A fake-webcam video for Chromium (`--use-file-for-fake-video-capture`) built from the real gesture photos.

Chromium reads raw YUV4MPEG2 (Y4M) 4:2:0 files and loops them, so a clip of one photo held still is a
webcam that shows that gesture forever. The writer is a few lines: a header, then per frame the word
FRAME, the full-resolution Y plane and the quarter-resolution U and V planes (BT.601 studio range,
as Chromium decodes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

WIDTH = 640
HEIGHT = 480
BACKGROUND = (236, 236, 236)  # BGR; close to the photos' pale wall so the padding adds no edges


def letterbox(image: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Scale a BGR image to fit width x height and pad the rest (keeps the hand's proportions)."""
    scale = min(width / image.shape[1], height / image.shape[0])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    top = (height - resized.shape[0]) // 2
    left = (width - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def to_i420(bgr: np.ndarray) -> bytes:
    """One frame as planar Y, U, V (4:2:0); width and height must be even."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes()


def write_y4m(path: Path, frames: Sequence[np.ndarray], fps: int) -> Path:
    """Write BGR frames (all the same even size) as an uncompressed Y4M 4:2:0 file."""
    if not frames:
        raise ValueError("at least one frame is needed")
    height, width = frames[0].shape[:2]
    if width % 2 or height % 2:
        raise ValueError("4:2:0 needs an even width and height")
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for frame in frames:
            if frame.shape[:2] != (height, width):
                raise ValueError("all frames must have the same size")
            out.write(b"FRAME\n")
            out.write(to_i420(frame))
    return path


def gesture_video(
    path: Path,
    gestures_dir: Path,
    segments: Sequence[tuple[str, float]],
    *,
    fps: int = 10,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Path:
    """A clip showing each (gesture photo, seconds) in turn, e.g. [("peace", 1.0)]; Chromium loops it."""
    frames: list[np.ndarray] = []
    for name, seconds in segments:
        image = cv2.imread(str(gestures_dir / f"{name}.jpg"))
        if image is None:
            raise FileNotFoundError(gestures_dir / f"{name}.jpg")
        frame = letterbox(image, width, height)
        frames.extend([frame] * max(1, round(seconds * fps)))
    return write_y4m(path, frames, fps)


def read_y4m_header(path: Path) -> dict[str, str]:
    """The header fields of a Y4M file (W, H, F, C...), for tests of the writer."""
    with path.open("rb") as f:
        line = f.readline().decode("ascii").split()
    if not line or line[0] != "YUV4MPEG2":
        raise ValueError("not a Y4M file")
    return {token[0]: token[1:] for token in line[1:]}
