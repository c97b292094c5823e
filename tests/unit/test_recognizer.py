"""model.recognizer.Recognizer end to end on real photos: decode, MediaPipe, the default classifier."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maze import Direction
from model.classifier import load_classifier
from model.frames import FrameError
from model.landmarks import HandTracker
from model.recognizer import Recognizer, RecognizerClosed, RecognizerConfig
from model.smoothing import SmoothingConfig
from tests.support.frames import (
    blank_jpeg,
    corrupt_jpeg,
    encode_jpeg,
    jittered_frames,
    load_rgb,
    truncated_jpeg,
    webcam_view,
)

GESTURES = ("dislike", "fist", "four", "like", "one", "palm", "peace", "stop", "three")
COUNTING = {"one": "up", "peace": "right", "three": "down", "four": "left", "like": "up", "dislike": "down"}
DT = 1 / 15


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(None)


@pytest.fixture
def make(classifier):
    made: list[Recognizer] = []

    def factory(**config) -> Recognizer:
        recognizer = Recognizer(lambda: classifier, RecognizerConfig(**config))
        made.append(recognizer)
        return recognizer

    yield factory
    for recognizer in made:
        recognizer.close()


@pytest.mark.parametrize("gesture", GESTURES)
def test_every_labelled_photo_is_recognised(make, gestures_dir, gesture):
    recognizer = make()
    result = recognizer.process((gestures_dir / f"{gesture}.jpg").read_bytes(), now=0.0)
    assert result.hand is True
    assert result.gesture == gesture
    assert 0.0 < result.confidence <= 1.0
    expected = COUNTING.get(gesture)
    assert result.direction == (Direction(expected) if expected else None)
    assert result.command is None  # one frame never fires
    assert len(result.landmarks) == 21
    assert result.handedness in {"Left", "Right"}
    assert set(result.stages_ms) == {"decode", "landmarks", "classify", "total"}
    assert result.stages_ms["total"] >= result.stages_ms["landmarks"] > 0
    assert (result.stats.width, result.stats.height) == (303, 303)


@pytest.mark.parametrize(("gesture", "expected"), [("like", "up"), ("one", "up"), ("dislike", "down")])
def test_a_held_gesture_fires_its_move_once_at_15fps(make, gestures_dir, gesture, expected):
    recognizer = make()
    frames = jittered_frames(gestures_dir / f"{gesture}.jpg", 6, seed=7)
    commands = [recognizer.process(frame, now=i * DT).command for i, frame in enumerate(frames)]
    assert commands == [None, None, Direction(expected), None, None, None]


def test_blank_frame_has_no_hand(make):
    result = make().process(blank_jpeg(), now=0.0)
    assert (result.hand, result.gesture, result.confidence) == (False, None, 0.0)
    assert result.command is None and result.direction is None
    assert result.landmarks is None and result.handedness is None
    assert result.stats.contrast == pytest.approx(0.0, abs=1.0)


def test_bad_frames_raise_frame_errors(make, gestures_dir):
    recognizer = make(max_frame_bytes=100_000, max_frame_width=640, max_frame_height=640)
    good = (gestures_dir / "like.jpg").read_bytes()
    cases = {
        b"": "empty_frame",
        b"\xff" * 100_001: "frame_too_large",
        b"GIF89a....": "not_jpeg",
        corrupt_jpeg(good): "corrupt_jpeg",
        truncated_jpeg(good): "corrupt_jpeg",
        encode_jpeg(np.zeros((700, 100, 3), np.uint8)): "frame_dimensions",
    }
    for data, code in cases.items():
        with pytest.raises(FrameError) as caught:
            recognizer.process(data, now=0.0)
        assert caught.value.code == code


def test_a_bad_frame_in_the_middle_of_a_hold_changes_nothing(make, gestures_dir):
    recognizer = make()
    frames = jittered_frames(gestures_dir / "like.jpg", 3, seed=1)
    assert recognizer.process(frames[0], now=0.0).command is None
    assert recognizer.process(frames[1], now=DT).command is None
    with pytest.raises(FrameError):
        recognizer.process(b"\xff\xd8\xff garbage", now=2 * DT)
    assert recognizer.process(frames[2], now=3 * DT).command == Direction.UP


def test_no_hand_rearms_the_hold(make, gestures_dir):
    recognizer = make()
    like = jittered_frames(gestures_dir / "like.jpg", 5, seed=2)
    blank = blank_jpeg(303, 303, 230)
    sequence = [like[0], like[1], blank, like[2], like[3], like[4]]
    commands = [recognizer.process(frame, now=i * DT).command for i, frame in enumerate(sequence)]
    assert commands == [None, None, None, None, None, Direction.UP]


def test_pointing_scheme_reads_the_finger_not_the_label(make, gestures_dir):
    recognizer = make(smoothing=SmoothingConfig(hold_frames=2))
    rotated = np.ascontiguousarray(cv2.rotate(load_rgb(gestures_dir / "one.jpg"), cv2.ROTATE_90_CLOCKWISE))
    frame = encode_jpeg(rotated)
    counted = recognizer.process(frame, now=0.0)  # counting: whatever the classifier reads, mapped
    mapped = COUNTING.get(counted.gesture or "")
    assert counted.direction == (Direction(mapped) if mapped else None)
    recognizer.set_scheme("pointing")
    assert recognizer.scheme == "pointing"
    first = recognizer.process(frame, now=DT)
    assert first.direction == Direction.LEFT and first.command is None  # the scheme switch re-armed
    assert recognizer.process(frame, now=2 * DT).command == Direction.LEFT
    with pytest.raises(ValueError):
        recognizer.set_scheme("telepathy")


def test_classifier_is_asked_per_frame(classifier, gestures_dir):
    calls = []

    def source():
        calls.append(1)
        return classifier

    recognizer = Recognizer(source, RecognizerConfig())
    try:
        photo = (gestures_dir / "palm.jpg").read_bytes()
        recognizer.process(photo, now=0.0)
        recognizer.process(photo, now=DT)
        recognizer.process(blank_jpeg(), now=2 * DT)  # no hand: nothing to classify
    finally:
        recognizer.close()
    assert len(calls) == 2


def test_tracker_is_created_lazily_and_released_on_close(classifier, gestures_dir):
    created: list[HandTracker] = []

    def factory() -> HandTracker:
        created.append(HandTracker(model_complexity=0))
        return created[-1]

    recognizer = Recognizer(lambda: classifier, RecognizerConfig(), tracker_factory=factory)
    assert created == []
    photo = (gestures_dir / "four.jpg").read_bytes()
    recognizer.process(photo, now=0.0)
    recognizer.process(photo, now=DT)
    assert len(created) == 1
    recognizer.close()
    recognizer.close()
    with pytest.raises(RuntimeError):
        created[0].detect(np.zeros((8, 8, 3), np.uint8))  # the MediaPipe graph was released
    with pytest.raises(RecognizerClosed):  # the play socket drops such a frame silently
        recognizer.process(photo, now=2 * DT)


def test_config_from_settings(settings):
    custom = settings.replace(
        default_scheme="pointing",
        counting_map=(("fist", "left"),),
        hold_frames=4,
        hold_ms=250,
        min_confidence=0.7,
        repeat_ms=900,
        model_complexity=0,
        min_detection_confidence=0.6,
        min_tracking_confidence=0.4,
        max_frame_bytes=1000,
        max_frame_width=320,
        max_frame_height=240,
    )
    config = RecognizerConfig.from_settings(custom)
    assert config.scheme == "pointing" and config.counting_map == (("fist", "left"),)
    assert config.smoothing == SmoothingConfig(hold_frames=4, hold_ms=250, min_confidence=0.7, repeat_ms=900)
    assert (config.model_complexity, config.min_detection_confidence, config.min_tracking_confidence) == (
        0,
        0.6,
        0.4,
    )
    assert (config.max_frame_bytes, config.max_frame_width, config.max_frame_height) == (1000, 320, 240)
    assert config.static_image_mode is False
    assert RecognizerConfig.from_settings(settings, scheme="pointing").scheme == "pointing"
    with pytest.raises(ValueError):
        RecognizerConfig(scheme="nope")
    with pytest.raises(ValueError):
        RecognizerConfig(counting_map=(("one", "sideways"),))


@pytest.fixture(scope="module")
def static_recognizer(classifier):
    recognizer = Recognizer(lambda: classifier, RecognizerConfig(static_image_mode=True))
    yield recognizer
    recognizer.close()


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1280, 720)])
@pytest.mark.parametrize("gesture", GESTURES)
def test_webcam_shaped_frames_keep_the_gesture(static_recognizer, gestures_dir, gesture, size):
    # Non-square frames: landmarks are scaled to pixel proportions before the features.
    frame = encode_jpeg(webcam_view(load_rgb(gestures_dir / f"{gesture}.jpg"), *size))
    result = static_recognizer.process(frame, now=0.0)
    assert result.gesture == gesture
    assert (result.stats.width, result.stats.height) == size
