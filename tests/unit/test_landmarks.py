"""model.landmarks.HandTracker on the real labelled photos with the real MediaPipe graph."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.landmarks import INDEX_TIP, WRIST, HandTracker
from tests.support.frames import jittered_frames, load_rgb

GESTURES = ("dislike", "fist", "four", "like", "one", "palm", "peace", "stop", "three")


@pytest.fixture(scope="module")
def static_tracker():
    with HandTracker(static_image_mode=True) as tracker:
        yield tracker


@pytest.mark.parametrize("gesture", GESTURES)
def test_finds_the_hand_in_every_labelled_photo(static_tracker, gestures_dir, gesture):
    rgb = load_rgb(gestures_dir / f"{gesture}.jpg")
    hand = static_tracker.detect(rgb)
    assert hand is not None
    assert hand.normalized.shape == (21, 3) and hand.normalized.dtype == np.float32
    assert np.all(hand.normalized[:, :2] > -0.05) and np.all(hand.normalized[:, :2] < 1.05)
    assert (hand.width, hand.height) == (rgb.shape[1], rgb.shape[0])
    assert hand.handedness in {"Left", "Right"}
    assert 0.5 < hand.score <= 1.0
    assert np.allclose(hand.pixels, hand.normalized[:, :2] * [rgb.shape[1], rgb.shape[0]])
    pairs = hand.xy_list()
    assert len(pairs) == 21 and all(len(p) == 2 for p in pairs)


def test_index_fingertip_is_above_the_wrist_in_one(static_tracker, gestures_dir):
    hand = static_tracker.detect(load_rgb(gestures_dir / "one.jpg"))
    assert hand is not None
    assert hand.pixels[INDEX_TIP][1] < hand.pixels[WRIST][1] - 50  # y grows downwards


def test_blank_and_noise_frames_have_no_hand(static_tracker):
    assert static_tracker.detect(np.full((240, 320, 3), 128, np.uint8)) is None
    noise = np.random.default_rng(0).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    assert static_tracker.detect(noise) is None


def test_handedness_names_the_real_hand_and_flips_with_the_image(static_tracker, gestures_dir):
    rgb = load_rgb(gestures_dir / "peace.jpg")
    hand = static_tracker.detect(rgb)
    mirrored = static_tracker.detect(np.ascontiguousarray(rgb[:, ::-1]))
    assert hand is not None and mirrored is not None
    assert {hand.handedness, mirrored.handedness} == {"Left", "Right"}


def test_tracking_mode_follows_a_video_like_stream(gestures_dir):
    frames = jittered_frames(gestures_dir / "palm.jpg", 12, seed=3, size=(320, 320))
    found = 0
    with HandTracker(model_complexity=0) as tracker:
        for data in frames:
            rgb = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            )
            found += tracker.detect(rgb) is not None
    assert found == len(frames)


def test_rejects_bad_input_and_use_after_close():
    tracker = HandTracker(static_image_mode=True)
    with pytest.raises(ValueError):
        tracker.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        tracker.detect(np.zeros((10, 10, 3), np.float32))
    tracker.close()
    tracker.close()  # idempotent
    with pytest.raises(RuntimeError):
        tracker.detect(np.zeros((10, 10, 3), np.uint8))


def test_model_complexity_is_checked():
    with pytest.raises(ValueError):
        HandTracker(model_complexity=2)
