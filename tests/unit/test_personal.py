"""Per-player calibration samples and the nearest-neighbour correction (pure numpy, no MediaPipe)."""

from __future__ import annotations

import numpy as np

from model.openset import NO_GESTURE
from model.personal import MAX_GESTURES, MAX_SAMPLES_PER_GESTURE, RELAXED, PlayerProfile


def identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def test_samples_are_bounded_per_gesture_and_in_number_of_gestures():
    profile = PlayerProfile()
    for _ in range(MAX_SAMPLES_PER_GESTURE + 5):
        profile.add("one", np.zeros(72))
    assert profile.counts() == {"one": MAX_SAMPLES_PER_GESTURE}
    for k in range(MAX_GESTURES + 3):
        profile.add(f"g{k}", np.zeros(72))
    assert len(profile.counts()) == MAX_GESTURES
    profile.clear()
    assert profile.counts() == {} and profile.adapter(identity) is None


def test_close_samples_decide_far_ones_leave_the_global_model():
    rng = np.random.default_rng(0)
    profile = PlayerProfile()
    three, relaxed = np.full(72, 2.0), np.full(72, -2.0)
    for _ in range(10):
        profile.add("three", three + rng.normal(scale=0.05, size=72))
        profile.add(RELAXED, relaxed + rng.normal(scale=0.05, size=72))
    adapter = profile.adapter(identity, radius=3.0)
    assert adapter is not None
    assert adapter.vote(three + 0.01)[0] == "three"
    assert adapter.vote(relaxed)[0] == NO_GESTURE  # the player's resting hand is no gesture
    assert adapter.vote(np.zeros(72) + 10.0) is None  # far from all their samples: global model


def test_recording_and_the_cached_adapter_follow_the_samples():
    profile = PlayerProfile()

    class Model:
        scaled = staticmethod(identity)

    model = Model()
    profile.record(np.ones(72), None)  # not recording: ignored
    assert profile.counts() == {}
    profile.recording = "peace"
    profile.record(np.ones(72), [[1.0, 2.0]] * 21)
    first = profile.adapter_for(model)
    assert first is not None and profile.adapter_for(model) is first  # cached while unchanged
    profile.record(np.ones(72), None)
    assert profile.adapter_for(model) is not first
    assert profile.counts() == {"peace": 2} and len(profile.landmarks["peace"]) == 1
