"""Close-ups for single images: the padded retry finds hands that fill the frame, and its landmarks
are mapped back to the original image's coordinates (real MediaPipe, real photos)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.landmarks import HandTracker, detect_padded, pad_frame


class MissFirst:
    """A tracker that misses on the plain image, so the padded path runs on a photo it would find."""

    def __init__(self, tracker: HandTracker) -> None:
        self.tracker, self.calls = tracker, 0

    def detect(self, rgb):
        self.calls += 1
        return None if self.calls == 1 else self.tracker.detect(rgb)


@pytest.fixture(scope="module")
def tracker():
    with HandTracker(model_complexity=0, static_image_mode=True) as t:
        yield t


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_pad_frame_centres_the_image():
    rgb = np.full((40, 20, 3), 200, dtype=np.uint8)
    padded, left, top = pad_frame(rgb, 0.5)
    assert padded.shape == (80, 60, 3) and (left, top) == (20, 20)
    assert (padded[20:60, 20:40] == 200).all()


@pytest.mark.parametrize("name", ["peace", "like"])
def test_padded_landmarks_are_in_original_coordinates(tracker, gestures_dir, name):
    rgb = _rgb(gestures_dir / f"{name}.jpg")
    plain = tracker.detect(rgb)
    assert plain is not None
    hand, pad = detect_padded(MissFirst(tracker), rgb, (0.25,))
    assert pad == 0.25 and hand is not None
    assert (hand.width, hand.height) == (rgb.shape[1], rgb.shape[0])
    err = np.abs(hand.normalized[:, :2] - plain.normalized[:, :2]).max()
    assert err < 0.03  # same hand, same place (MediaPipe itself moves points ~1 % between scales)


def test_tight_close_ups_are_found_with_padding(tracker, gestures_dir):
    missed_plain = found_padded = 0
    for path in sorted(gestures_dir.glob("*.jpg")):
        rgb = _rgb(path)
        hand = tracker.detect(rgb)
        h, w = rgb.shape[:2]
        px = hand.normalized[:, :2] * [w, h]
        (x0, y0), (x1, y1) = px.min(axis=0).astype(int), px.max(axis=0).astype(int)
        crop = np.ascontiguousarray(rgb[max(0, y0):y1, max(0, x0):x1])  # the hand fills the picture
        if tracker.detect(crop) is None:
            missed_plain += 1
            found_padded += detect_padded(tracker, crop, (0.25, 0.5))[0] is not None
    assert missed_plain >= 1  # the palm detector does miss hands that fill the frame
    assert found_padded >= missed_plain - 1
