"""Video-like JPEG frames from labelled gesture photos, encoded before the run.

Each gesture photo is re-encoded many times with a slow drift in position, zoom and brightness so that
consecutive frames differ like webcam video. Everything is encoded up front: encoding during the run
would spend the client's CPU, which shares the machine with the server being measured.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.schemes import DEFAULT_COUNTING_MAP as SERVER_COUNTING_MAP

# Gestures that map to a move in the default `counting` scheme, in the order a player cycles through them,
# and the neutral gesture shown between two of them (so every move starts from a fresh gesture change).
MOVE_GESTURES: tuple[str, ...] = ("one", "peace", "three", "four", "like", "dislike")
NEUTRAL_GESTURE = "palm"
# What is shown between two move gestures: a neutral hand, or else a frame with no hand in view.
NEUTRAL_CHOICES: tuple[str, ...] = (NEUTRAL_GESTURE, "none")
# Photos shipped with the package (Apache-2.0, see ATTRIBUTION.md there): like, dislike and none.
BUNDLED_IMAGES_DIR = Path(__file__).with_name("images")
# The server's default counting map (a load test against a server with another one passes its own).
DEFAULT_COUNTING_MAP: Mapping[str, str] = dict(SERVER_COUNTING_MAP)


class FrameSourceError(RuntimeError):
    """The photos needed to build frames are missing or unreadable."""


def default_images_dir() -> Path:
    """The shared photos (all six move gestures) when they are there, else the bundled set.

    Looked for: $GM_SHARED_DIR/data/images, then `../shared/data/images` beside the repository or the
    working directory; a fresh clone or an installed package falls back to `BUNDLED_IMAGES_DIR`.
    """
    candidates = []
    if os.environ.get("GM_SHARED_DIR"):
        candidates.append(Path(os.environ["GM_SHARED_DIR"]) / "data" / "images")
    repo = Path(__file__).resolve().parents[2]
    for root in (repo.parent, Path.cwd().parent):
        candidates.append(root / "shared" / "data" / "images")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return BUNDLED_IMAGES_DIR


def find_gesture_photos(images_dir: Path, gestures: Sequence[str]) -> dict[str, Path]:
    """`<gesture>.jpg` in `images_dir/gestures/` or in `images_dir` itself."""
    found: dict[str, Path] = {}
    for folder in (images_dir / "gestures", images_dir):
        for gesture in gestures:
            if gesture in found:
                continue
            for suffix in (".jpg", ".jpeg", ".png"):
                path = folder / f"{gesture}{suffix}"
                if path.is_file():
                    found[gesture] = path
                    break
    return found


def render_frame(
    photo: np.ndarray, width: int, height: int, *, dx: float, dy: float, zoom: float, gain: float
) -> np.ndarray:
    """The photo fitted into a width x height canvas, shifted by (dx, dy) fractions of the canvas, zoomed
    and with its brightness scaled; edges are replicated so no black borders appear."""
    ph, pw = photo.shape[:2]
    scale = min(width / pw, height / ph) * zoom
    tx = (width - pw * scale) / 2 + dx * width
    ty = (height - ph * scale) / 2 + dy * height
    matrix = np.array([[scale, 0.0, tx], [0.0, scale, ty]], dtype=np.float64)
    canvas = cv2.warpAffine(
        photo, matrix, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    return cv2.convertScaleAbs(canvas, alpha=gain, beta=0)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise FrameSourceError("JPEG encoding failed")
    return buffer.tobytes()


@dataclass(frozen=True)
class GestureStep:
    gesture: str
    seconds: float


def gesture_schedule(
    hold_s: float = 1.0,
    neutral_s: float = 0.6,
    *,
    moves: Sequence[str] = MOVE_GESTURES,
    neutral: str = NEUTRAL_GESTURE,
) -> tuple[GestureStep, ...]:
    """one, palm, peace, palm, ...: each move gesture held `hold_s`, then the neutral one."""
    steps: list[GestureStep] = []
    for gesture in moves:
        steps.append(GestureStep(gesture, hold_s))
        steps.append(GestureStep(neutral, neutral_s))
    return tuple(steps)


class FrameSource:
    """A pool of pre-encoded frames per gesture and the schedule that says which gesture is shown when."""

    def __init__(
        self,
        frames: Mapping[str, Sequence[bytes]],
        schedule: Sequence[GestureStep],
    ) -> None:
        if not schedule:
            raise ValueError("empty gesture schedule")
        missing = {step.gesture for step in schedule} - set(frames)
        if missing:
            raise FrameSourceError(f"no frames for gestures: {sorted(missing)}")
        self.frames = {k: tuple(v) for k, v in frames.items()}
        self.schedule = tuple(schedule)
        self.cycle_s = sum(step.seconds for step in self.schedule)

    @classmethod
    def from_photos(
        cls,
        images_dir: Path,
        *,
        width: int = 320,
        height: int = 240,
        quality: int = 70,
        variants: int = 15,
        hold_s: float = 1.0,
        neutral_s: float = 0.6,
    ) -> FrameSource:
        # Every move gesture that has a photo, in MOVE_GESTURES order; the first neutral choice found.
        found = find_gesture_photos(images_dir, (*MOVE_GESTURES, *NEUTRAL_CHOICES))
        moves = [g for g in MOVE_GESTURES if g in found]
        neutral = next((g for g in NEUTRAL_CHOICES if g in found), None)
        if not moves or neutral is None:
            raise FrameSourceError(
                f"{images_dir}: missing photos (expected <gesture>.jpg for at least one of "
                f"{', '.join(MOVE_GESTURES)} and one of {', '.join(NEUTRAL_CHOICES)})"
            )
        schedule = gesture_schedule(hold_s, neutral_s, moves=moves, neutral=neutral)
        photos = {g: found[g] for g in (*moves, neutral)}
        frames: dict[str, list[bytes]] = {}
        for gesture, path in photos.items():
            photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if photo is None:
                raise FrameSourceError(f"{path}: not a readable image")
            frames[gesture] = [
                encode_jpeg(render_frame(photo, width, height, **_drift(i, variants)), quality)
                for i in range(variants)
            ]
        return cls(frames, schedule)

    def as_landmarks(self) -> FrameSource:
        """The same frames as edge-mode messages: each JPEG's hand found here once (the server's own
        tracker settings, one still image each), sent as a `landmarks` text message instead."""
        from model.frames import decode_jpeg
        from model.landmarks import HandTracker
        from stream.protocol.client import SeenHand, encode_landmarks

        tracker = HandTracker(static_image_mode=True)
        try:
            messages: dict[str, list[str]] = {}
            for gesture, pool in self.frames.items():
                messages[gesture] = []
                for jpeg in pool:
                    rgb = decode_jpeg(jpeg, len(jpeg), 8192, 8192)  # our own frames: no caps to apply
                    hand = tracker.detect(rgb)
                    seen = None if hand is None else SeenHand(
                        tuple(tuple(float(v) for v in point) for point in hand.normalized),
                        hand.handedness,
                        float(hand.score),
                    )
                    messages[gesture].append(encode_landmarks(rgb.shape[1], rgb.shape[0], seen))
        finally:
            tracker.close()
        return FrameSource(messages, self.schedule)  # type: ignore[arg-type]  (text frames)

    def gesture_at(self, t: float) -> str:
        """The gesture shown `t` seconds after the player started (the schedule repeats)."""
        offset = t % self.cycle_s if self.cycle_s > 0 else 0.0
        for step in self.schedule:
            if offset < step.seconds:
                return step.gesture
            offset -= step.seconds
        return self.schedule[-1].gesture

    def frame(self, gesture: str, index: int) -> bytes:
        pool = self.frames[gesture]
        return pool[index % len(pool)]

    @property
    def mean_bytes(self) -> float:
        sizes = [len(f) for pool in self.frames.values() for f in pool]
        return sum(sizes) / len(sizes)

    @property
    def all_frames(self) -> list[bytes]:
        return [f for pool in self.frames.values() for f in pool]


def _drift(i: int, n: int) -> dict[str, float]:
    """Smooth, periodic hand-held jitter: consecutive variants differ a little, the pool loops cleanly."""
    phase = 2 * math.pi * i / max(n, 1)
    return {
        "dx": 0.04 * math.sin(phase),
        "dy": 0.03 * math.sin(2 * phase + 0.7),
        "zoom": 1.0 + 0.04 * math.sin(phase + 1.3),
        "gain": 1.0 + 0.12 * math.sin(3 * phase + 0.4),
    }
