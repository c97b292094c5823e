"""Classifying many players' hands in one pass: the same answers as one at a time, failures kept apart,
and the batcher's thread (batches form only while another hand is on its way; bounded; stoppable)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.classifier import load_classifier
from model.features import features_from_xy, usable_features
from model.landmarks import Hand
from model.personal import PlayerProfile
from model.recognizer import Recognizer, RecognizerClosed, RecognizerConfig, recognise_many
from stream.metrics import Metrics
from stream.recognition.batching import BatcherStopped, ClassifyBatcher

HELDOUT = Path(__file__).resolve().parents[2] / "data" / "heldout" / "hagrid_test_gestures_kp42.csv"
SIDE = 640  # hands are drawn on a square frame: its pixel proportions are the kp42 proportions
RESULT_WAIT_S = 30.0  # an upper bound for a busy machine, not an expected time


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(None)


@pytest.fixture(scope="module")
def kp42() -> tuple[np.ndarray, list[str]]:
    """(N, 21, 2) kp42 x,y of real hands of people never trained on, and their labels."""
    frame = pd.read_csv(HELDOUT).groupby("label").head(8)  # every gesture, a few of each
    xs = [f"x{i}" for i in range(1, 22)]
    ys = [f"y{i}" for i in range(1, 22)]
    return np.stack([frame[xs].to_numpy(float), frame[ys].to_numpy(float)], axis=2), frame["label"].tolist()


def as_hand(xy: np.ndarray) -> Hand:
    """kp42 (-1..1 around the wrist) -> a hand in a SIDE x SIDE frame, as MediaPipe would report it."""
    normalized = np.zeros((21, 3), dtype=np.float32)
    normalized[:, :2] = (xy + 1.0) / 2.5 + 0.1
    return Hand(normalized=normalized, width=SIDE, height=SIDE, handedness="Right", score=0.95)


def make_recognizer(classifier, **kwargs) -> Recognizer:
    return Recognizer(lambda: classifier, RecognizerConfig(), **kwargs)


def test_one_pass_answers_what_one_at_a_time_answers(classifier, kp42):
    xy, labels = kp42
    features = features_from_xy(xy)
    single = [classifier.predict(row) for row in features]
    many = classifier.predict_many(features)
    assert [p.gesture for p in many] == [p.gesture for p in single]
    assert [p.closest for p in many] == [p.closest for p in single]
    np.testing.assert_allclose([p.confidence for p in many], [p.confidence for p in single], rtol=1e-4)
    np.testing.assert_allclose([p.ood_score for p in many], [p.ood_score for p in single], rtol=1e-4)
    assert sum(p.gesture == label for p, label in zip(many, labels, strict=True)) >= 0.8 * len(labels)


def test_each_row_keeps_its_own_players_calibration(classifier, kp42):
    xy, _ = kp42
    features = features_from_xy(xy)
    profile = PlayerProfile()
    for _ in range(12):  # this player's "peace" is the first hand of the set, whatever it shows
        profile.add("peace", features[0])
    adapter = profile.adapter_for(classifier)
    assert adapter is not None
    answers = classifier.predict_many(features[:3], [adapter, None, None])
    assert answers[0].gesture == "peace"
    assert answers[1:] == classifier.predict_many(features[1:3])


def test_usable_features_leave_out_what_one_hand_would_refuse(kp42):
    xy, _ = kp42
    batch = np.concatenate([xy[:2], np.zeros((1, 21, 2)), xy[2:3]])  # row 2: every point at the wrist
    batch[3, 4, 0] = np.nan  # row 3: a non-finite coordinate
    features, usable = usable_features(batch)
    assert usable.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(features, features_from_xy(xy[:2]))


def test_a_batch_keeps_each_players_failure_and_smoothing_to_itself(classifier, kp42):
    xy, _ = kp42
    players = [make_recognizer(classifier) for _ in range(3)]
    players[1].close()  # this player left while their hand waited for the batch
    degenerate = as_hand(np.zeros((21, 2)))
    work = [(players[0], players[0].observe_landmarks(as_hand(xy[0])), 0.0),
            (players[2], players[2].observe_landmarks(degenerate), 0.0)]
    closed_work = (players[1], players[0].observe_landmarks(as_hand(xy[1])), 0.0)
    outcomes = recognise_many([work[0], closed_work, work[1]])
    assert isinstance(outcomes[1], RecognizerClosed)
    first, degenerate_result = outcomes[0], outcomes[2]
    assert not isinstance(first, BaseException) and not isinstance(degenerate_result, BaseException)
    assert first.gesture == players[0].process_landmarks(as_hand(xy[0]), 0.1).gesture
    assert degenerate_result.hand and degenerate_result.gesture is None  # a hand, nothing to read


def _batcher(**kwargs) -> tuple[ClassifyBatcher, Metrics]:
    metrics = Metrics(process=False)
    return ClassifyBatcher(kwargs.pop("max_batch", 8), kwargs.pop("capacity", 16), metrics, **kwargs), metrics


def _batches(metrics: Metrics) -> tuple[float, float]:
    samples = {s.name: s.value for m in metrics.classify_batch.collect() for s in m.samples}
    return samples["gesture_maze_classify_batch_size_count"], samples["gesture_maze_classify_batch_size_sum"]


def _held_phase_one(batcher: ClassifyBatcher, recognizer: Recognizer, hand: Hand) -> tuple[
        threading.Thread, threading.Event, list[Future]]:
    """A pool job whose phase one is still running (until the event is set), in a thread."""
    release, out = threading.Event(), []

    def observe():
        assert release.wait(RESULT_WAIT_S)
        return recognizer.observe_landmarks(hand)

    thread = threading.Thread(target=lambda: out.append(batcher.phase_one(recognizer, observe, 0.0)()))
    thread.start()
    return thread, release, out


def test_a_hand_waits_for_one_already_on_its_way_and_they_share_a_pass(classifier, kp42):
    xy, _ = kp42
    batcher, metrics = _batcher(linger_s=RESULT_WAIT_S)
    a, b = make_recognizer(classifier), make_recognizer(classifier)
    try:
        thread, release, out = _held_phase_one(batcher, b, as_hand(xy[1]))
        while batcher._on_the_way == 0:  # b's phase one has started
            threading.Event().wait(0.001)
        first = batcher.submit(a, a.observe_landmarks(as_hand(xy[0])), 0.0)
        release.set()
        thread.join(RESULT_WAIT_S)
        assert first.result(RESULT_WAIT_S).hand and out[0].result(RESULT_WAIT_S).hand
        assert _batches(metrics) == (1.0, 2.0)  # one pass, two hands
    finally:
        batcher.close()


def test_a_lone_hand_does_not_wait(classifier, kp42):
    xy, _ = kp42
    batcher, metrics = _batcher(linger_s=3600.0)  # a wait would outlast the test's timeout
    recognizer = make_recognizer(classifier)
    try:
        assert batcher.submit(recognizer, recognizer.observe_landmarks(as_hand(xy[0])), 0.0) \
            .result(RESULT_WAIT_S).gesture is not None

        def bad_frame():
            raise ValueError("a frame phase one refused")

        with pytest.raises(ValueError):  # the lane's outcome; it leaves nobody "on the way"
            batcher.phase_one(recognizer, bad_frame, 0.0)()
        assert batcher.submit(recognizer, recognizer.observe_landmarks(as_hand(xy[1])), 0.1) \
            .result(RESULT_WAIT_S).hand
        assert _batches(metrics) == (2.0, 2.0)
    finally:
        batcher.close()


def test_the_queue_is_bounded_and_a_stopped_batcher_refuses(classifier, kp42):
    xy, _ = kp42
    batcher, _ = _batcher(capacity=1, linger_s=RESULT_WAIT_S)
    a, b, c = (make_recognizer(classifier) for _ in range(3))
    thread, release, out = _held_phase_one(batcher, b, as_hand(xy[1]))
    try:
        while batcher._on_the_way == 0:
            threading.Event().wait(0.001)
        held = batcher.submit(a, a.observe_landmarks(as_hand(xy[0])), 0.0)  # waits for b: the queue is full
        with pytest.raises(RuntimeError, match="queue full"):
            batcher.submit(c, c.observe_landmarks(as_hand(xy[2])), 0.0).result(RESULT_WAIT_S)
    finally:
        release.set()
        thread.join(RESULT_WAIT_S)
    assert held.result(RESULT_WAIT_S).hand  # b no longer on its way: a's pass runs
    with pytest.raises(RuntimeError, match="queue full"):  # b found the queue full too
        out[0].result(RESULT_WAIT_S)
    batcher.close()
    with pytest.raises(BatcherStopped):
        batcher.submit(c, c.observe_landmarks(as_hand(xy[2])), 0.0).result(RESULT_WAIT_S)


def test_an_idle_batcher_keeps_no_finished_players_alive(classifier, kp42):
    xy, _ = kp42
    batcher, _ = _batcher()
    try:
        recognizer = make_recognizer(classifier)
        future = batcher.submit(recognizer, recognizer.observe_landmarks(as_hand(xy[0])), 0.0)
        assert future.result(RESULT_WAIT_S).hand
        gone = weakref.ref(recognizer)
        del recognizer
        deadline = time.monotonic() + RESULT_WAIT_S
        while gone() is not None:  # the thread finishes the pass, lets go of it and waits for the next
            assert time.monotonic() < deadline, "the classify thread still holds the last batch's player"
            gc.collect()
            time.sleep(0.01)
    finally:
        batcher.close()


def test_hands_queued_for_a_loop_are_settled_on_it_with_the_one_at_a_time_answers(classifier, kp42):
    # Edge mode's path: the job runs on the event loop and returns one of the loop's own futures; a
    # cancelled one (its player left) is skipped and the rest of the batch is still answered.
    xy, _ = kp42
    batcher, _ = _batcher()

    async def play() -> list:
        loop = asyncio.get_running_loop()
        players = [make_recognizer(classifier) for _ in range(4)]
        futures = [batcher.phase_one(p, lambda p=p, n=n: p.observe_landmarks(as_hand(xy[n])), 0.0, loop)()
                   for n, p in enumerate(players)]
        assert all(isinstance(f, asyncio.Future) for f in futures)
        futures[1].cancel()
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), RESULT_WAIT_S)

    try:
        settled = asyncio.run(play())
    finally:
        batcher.close()
    assert isinstance(settled[1], asyncio.CancelledError)
    alone = [make_recognizer(classifier).process_landmarks(as_hand(xy[n]), 0.0) for n in (0, 2, 3)]
    assert [r.gesture for r in (settled[0], settled[2], settled[3])] == [r.gesture for r in alone]
