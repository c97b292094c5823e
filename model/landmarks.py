"""Hand landmarks from RGB frames with MediaPipe Hands (legacy `solutions` API, offline models).

One `HandTracker` per video stream: in tracking mode (`static_image_mode=False`) MediaPipe runs the
palm detector only until it has a hand, then follows it from frame to frame with the (cheaper)
landmark model, so its state belongs to one stream. It is not thread-safe: one frame at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Landmark indices (MediaPipe Hands topology).
WRIST = 0
THUMB_TIP = 4
INDEX_MCP, INDEX_PIP, INDEX_DIP, INDEX_TIP = 5, 6, 7, 8
MIDDLE_MCP, MIDDLE_PIP, MIDDLE_DIP, MIDDLE_TIP = 9, 10, 11, 12
RING_MCP, RING_PIP, RING_DIP, RING_TIP = 13, 14, 15, 16
PINKY_MCP, PINKY_PIP, PINKY_DIP, PINKY_TIP = 17, 18, 19, 20

_SWAP_HANDEDNESS = {"Left": "Right", "Right": "Left"}


@dataclass(frozen=True)
class Hand:
    """One detected hand in an unmirrored camera frame."""

    normalized: np.ndarray  # (21, 3) float32: x, y in 0..1 of the image width/height, z relative depth
    width: int  # the frame's size, to turn normalised coordinates into pixels
    height: int
    handedness: str  # "Left" or "Right": the person's real hand, for an unmirrored (raw camera) frame
    score: float  # handedness classification score (MediaPipe's hand presence confidence)

    @property
    def pixels(self) -> np.ndarray:
        """(21, 2) float32 pixel coordinates (x right, y down)."""
        return self.normalized[:, :2] * np.array([self.width, self.height], dtype=np.float32)

    def xy_list(self, digits: int = 4) -> list[list[float]]:
        """Normalised [x, y] pairs, rounded, ready for JSON."""
        return np.round(self.normalized[:, :2].astype(np.float64), digits).tolist()  # type: ignore[no-any-return]


class HandTracker:
    """A MediaPipe Hands graph for one stream (or, with static_image_mode=True, for single images)."""

    def __init__(
        self,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        static_image_mode: bool = False,
    ) -> None:
        if model_complexity not in (0, 1):
            raise ValueError(f"model_complexity must be 0 (lite) or 1 (full), got {model_complexity}")
        # Imported here: mediapipe pulls in TensorFlow Lite and takes ~1 s to import; modules that only
        # need `Hand` (schemes, tests of pure code) should not pay for it.
        from mediapipe.python.solutions import hands as mp_hands

        self.static_image_mode = static_image_mode
        self._hands = mp_hands.Hands(
            static_image_mode=static_image_mode,
            max_num_hands=1,
            model_complexity=model_complexity,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def detect(self, rgb: np.ndarray) -> Hand | None:
        """Landmarks of the hand in an (H, W, 3) uint8 RGB frame, or None when there is none."""
        if self._hands is None:
            raise RuntimeError("HandTracker is closed")
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        frame = np.ascontiguousarray(rgb)
        frame.flags.writeable = False  # lets MediaPipe wrap the buffer instead of copying it
        result = self._hands.process(frame)
        if not result.multi_hand_landmarks:
            return None
        points = result.multi_hand_landmarks[0].landmark
        normalized = np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32)
        label = result.multi_handedness[0].classification[0]
        # MediaPipe labels hands as if the image were mirrored (a selfie preview); frames here are the
        # raw camera image, so the label is swapped to name the person's real hand.
        return Hand(
            normalized=normalized,
            width=int(rgb.shape[1]),
            height=int(rgb.shape[0]),
            handedness=_SWAP_HANDEDNESS.get(label.label, label.label),
            score=float(label.score),
        )

    def close(self) -> None:
        """Release the MediaPipe graph (idempotent)."""
        hands, self._hands = self._hands, None
        if hands is not None:
            hands.close()

    def __enter__(self) -> HandTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pad_frame(rgb: np.ndarray, fraction: float) -> tuple[np.ndarray, int, int]:
    """`rgb` centred on a larger canvas: `fraction` of the longer side added on every side, filled
    with the frame's mean colour. Returns (padded, left, top) offsets in pixels."""
    h, w = rgb.shape[:2]
    pad = max(1, round(fraction * max(h, w)))
    canvas = np.empty((h + 2 * pad, w + 2 * pad, 3), dtype=np.uint8)
    canvas[:] = rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    canvas[pad:pad + h, pad:pad + w] = rgb
    return canvas, pad, pad


def detect_padded(
    tracker: HandTracker, rgb: np.ndarray, fractions: tuple[float, ...], max_side: int = 640
) -> tuple[Hand | None, float]:
    """Single images: detect; when no hand is found, retry on padded copies (a hand that fills the
    frame is too big for the palm detector, which looks for palms well inside the image).

    The retry works on a copy scaled down to `max_side` first (MediaPipe looks at 192-224 px anyway),
    so a large upload costs no more memory padded than it did plain. Returns the hand in the
    *original* frame's coordinates and the padding that found it (0.0: found without padding).
    """
    hand = tracker.detect(rgb)
    if hand is not None or not fractions:
        return hand, 0.0
    h0, w0 = rgb.shape[:2]
    small = rgb
    if max(h0, w0) > max_side:
        import cv2

        k = max_side / max(h0, w0)
        small = cv2.resize(rgb, (max(1, round(w0 * k)), max(1, round(h0 * k))), interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    for fraction in fractions:
        padded, left, top = pad_frame(small, fraction)
        found = tracker.detect(padded)
        if found is None:
            continue
        ph, pw = padded.shape[:2]
        normalized = found.normalized.copy()
        normalized[:, 0] = (normalized[:, 0] * pw - left) / w
        normalized[:, 1] = (normalized[:, 1] * ph - top) / h
        normalized[:, 2] = normalized[:, 2] * pw / w  # MediaPipe's z is on the scale of the width
        return Hand(normalized, w0, h0, found.handedness, found.score), fraction
    return None, 0.0
