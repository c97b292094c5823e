"""stream.recognition.pipeline: the shared pool and latest-frame-wins lanes, with real threads.

Jobs block on threading.Events the test controls, so every ordering is forced, never timed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from model.frames import FrameStats
from model.recognizer import RecognitionResult
from stream.metrics import Metrics
from stream.recognition.pipeline import FramePipeline, observe_frame_error, observe_recognition

WAIT = 10.0  # generous upper bound for a condition that should hold almost at once


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        # Polls state changed by pool threads (no event to wait on); the timeout only bounds a hang.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


class Gate:
    """A job body that reports when it started and waits until the test opens it."""

    def __init__(self, value: object = None) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.value = value
        self.thread: str | None = None

    def __call__(self) -> object:
        self.thread = threading.current_thread().name
        self.started.set()
        if not self.release.wait(WAIT):
            raise TimeoutError("gate never opened")
        return self.value


class Collector:
    def __init__(self) -> None:
        self.results: list[object] = []

    async def __call__(self, outcome: object) -> None:
        self.results.append(outcome)


@pytest.fixture
async def pipeline():
    metrics = Metrics(process=False)
    pipe = FramePipeline(2, metrics)
    yield pipe
    await pipe.shutdown()


async def test_job_runs_in_a_pool_thread_and_reports(pipeline):
    lane, done = pipeline.lane(), Collector()
    gate = Gate("result")
    gate.release.set()
    assert lane.offer(gate, done) is True
    await until(lambda: done.results)
    assert done.results == ["result"]
    assert gate.thread is not None and gate.thread.startswith("frames")
    assert gate.thread != threading.current_thread().name


async def test_latest_frame_wins(pipeline):
    lane, done = pipeline.lane(), Collector()
    first = Gate(1)
    assert lane.offer(first, done) is True
    await asyncio.to_thread(first.started.wait, WAIT)
    never: list[int] = []
    assert lane.offer(lambda: never.append(2) or 2, done) is True  # pending
    assert lane.offer(lambda: never.append(3) or 3, done) is False  # replaced 2
    assert lane.offer(lambda: 4, done) is False  # replaced 3
    first.release.set()
    await until(lambda: len(done.results) == 2)
    assert done.results == [1, 4]
    assert never == []  # the superseded jobs never ran
    assert lane.dropped == 2
    assert sample(pipeline.metrics, "gesture_maze_frames_dropped_total", reason="superseded") == 2
    await lane.close()
    assert done.results == [1, 4]


async def test_at_most_one_job_in_flight_per_lane_and_arrival_order(pipeline):
    lane, done = pipeline.lane(), Collector()
    running = 0
    peak = 0
    lock = threading.Lock()

    def job(n: int) -> Callable[[], int]:
        def run() -> int:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                return n
            finally:
                with lock:
                    running -= 1

        return run

    accepted = 0
    for n in range(200):
        accepted += lane.offer(job(n), done)
        if n % 7 == 0:
            await asyncio.sleep(0)
    await until(lambda: not lane.busy)
    await lane.close()
    assert peak == 1
    assert done.results == sorted(done.results)  # arrival order, no duplicates
    assert len(set(done.results)) == len(done.results)
    assert done.results[0] == 0 and done.results[-1] == 199  # the newest frame is never dropped
    # Every offer was either delivered or counted as superseded; offer() said which.
    assert len(done.results) + lane.dropped == 200
    assert accepted == 200 - lane.dropped


async def test_lanes_share_the_pool_in_parallel_and_gauges_follow(pipeline):
    metrics = pipeline.metrics
    gates = [Gate(i) for i in range(3)]
    lanes = [pipeline.lane() for _ in gates]
    done = Collector()
    for lane, gate in zip(lanes, gates, strict=True):
        lane.offer(gate, done)
    # Two workers: two jobs run at once, the third waits for a thread.
    await asyncio.to_thread(gates[0].started.wait, WAIT)
    await asyncio.to_thread(gates[1].started.wait, WAIT)
    await until(lambda: pipeline.backlog == 1)
    assert pipeline.in_flight == 2
    assert not gates[2].started.is_set()
    assert sample(metrics, "gesture_maze_pool_in_flight") == 2
    assert sample(metrics, "gesture_maze_pool_backlog") == 1
    for gate in gates:
        gate.release.set()
    await until(lambda: len(done.results) == 3)
    assert sorted(done.results) == [0, 1, 2]
    await until(lambda: pipeline.in_flight == 0)
    assert pipeline.backlog == 0
    assert sample(metrics, "gesture_maze_pool_in_flight") == 0


async def test_a_failing_job_is_reported_and_the_lane_goes_on(pipeline):
    lane, done = pipeline.lane(), Collector()

    def boom() -> None:
        raise RuntimeError("bad frame")

    lane.offer(boom, done)
    await until(lambda: len(done.results) == 1)
    lane.offer(lambda: "next", done)
    await until(lambda: len(done.results) == 2)
    assert isinstance(done.results[0], RuntimeError) and str(done.results[0]) == "bad frame"
    assert done.results[1] == "next"


async def test_a_failing_callback_does_not_kill_the_lane(pipeline, caplog):
    lane, done = pipeline.lane(), Collector()

    async def bad_callback(outcome: object) -> None:
        raise ValueError("callback bug")

    lane.offer(lambda: 1, bad_callback)
    await lane.close()  # waits for the job and its callback
    lane2 = pipeline.lane()
    lane2.offer(lambda: 2, done)
    await lane2.close()
    assert done.results == [2]
    assert "callback bug" in caplog.text


async def test_close_waits_for_the_job_in_flight_and_drops_the_pending_one(pipeline):
    lane, done = pipeline.lane(), Collector()
    gate = Gate("in flight")
    lane.offer(gate, done)
    await asyncio.to_thread(gate.started.wait, WAIT)
    lane.offer(lambda: "pending", done)
    closing = asyncio.create_task(lane.close())
    await asyncio.sleep(0)
    assert not closing.done()
    gate.release.set()
    await asyncio.wait_for(closing, WAIT)
    assert done.results == ["in flight"]
    assert lane.offer(lambda: "late", done) is False  # refused after close
    await asyncio.sleep(0)
    assert done.results == ["in flight"]


async def test_shutdown_finishes_in_flight_jobs():
    pipe = FramePipeline(1, Metrics(process=False))
    lane, done = pipe.lane(), Collector()
    gate = Gate("finished")
    lane.offer(gate, done)
    await asyncio.to_thread(gate.started.wait, WAIT)
    lane.offer(lambda: "pending", done)
    stopping = asyncio.create_task(pipe.shutdown())
    await asyncio.sleep(0)
    assert not stopping.done()
    gate.release.set()
    await asyncio.wait_for(stopping, WAIT)
    assert done.results == ["finished"]
    with pytest.raises(RuntimeError):
        pipe.lane()
    with pytest.raises(RuntimeError):
        await pipe.run(lambda: 1)


async def test_run_outside_a_lane(pipeline):
    assert await pipeline.run(lambda: 6 * 7) == 42
    with pytest.raises(ZeroDivisionError):
        await pipeline.run(lambda: 1 / 0)
    assert pipeline.in_flight == 0 and pipeline.backlog == 0


def test_workers_must_be_positive():
    with pytest.raises(ValueError):
        FramePipeline(0)


def test_observe_recognition_records_every_metric():
    metrics = Metrics(process=False)
    stats = FrameStats(bytes=20_000, width=640, height=480, brightness=120.0, contrast=40.0, sharpness=300.0)
    result = RecognitionResult(
        hand=True,
        gesture="like",
        confidence=0.9,
        command=None,
        handedness="Right",
        stages_ms={"decode": 2.0, "landmarks": 20.0, "classify": 0.5, "total": 22.5},
        stats=stats,
    )
    observe_recognition(metrics, result)
    observe_recognition(metrics, RecognitionResult(False, None, 0.0, None, None, {"total": 5.0}, stats))
    observe_frame_error(metrics, "not_jpeg")
    assert sample(metrics, "gesture_maze_frames_processed_total") == 2
    assert sample(metrics, "gesture_maze_gestures_total", gesture="like") == 1
    assert sample(metrics, "gesture_maze_frames_hand_total", detected="true") == 1
    assert sample(metrics, "gesture_maze_frames_hand_total", detected="false") == 1
    assert sample(metrics, "gesture_maze_stage_seconds_count", stage="landmarks") == 1
    assert sample(metrics, "gesture_maze_stage_seconds_sum", stage="total") == pytest.approx(0.0275)
    assert sample(metrics, "gesture_maze_prediction_confidence_count") == 1
    assert sample(metrics, "gesture_maze_frame_width_pixels_sum") == 1280
    assert sample(metrics, "gesture_maze_frame_brightness_count") == 2
    assert sample(metrics, "gesture_maze_frames_invalid_total", reason="not_jpeg") == 1


async def test_a_job_offered_while_the_last_callback_runs_is_not_lost(pipeline):
    lane, done = pipeline.lane(), Collector()
    in_callback, leave_callback = asyncio.Event(), asyncio.Event()

    async def slow_callback(outcome: object) -> None:
        in_callback.set()
        await leave_callback.wait()
        done.results.append(outcome)

    lane.offer(lambda: "first", slow_callback)
    await asyncio.wait_for(in_callback.wait(), WAIT)
    assert lane.busy
    assert lane.offer(lambda: "second", done) is True  # becomes pending while the callback runs
    leave_callback.set()
    await until(lambda: len(done.results) == 2)
    assert done.results == ["first", "second"]


async def test_a_job_that_hands_its_work_on_is_awaited_before_the_next(pipeline):
    """A job may return a concurrent Future (phase two elsewhere, e.g. the classifier's batches): the
    lane reports its outcome, and starts the next job only once it is settled; inline jobs skip the
    pool's thread hop."""
    lane, done = pipeline.lane(), Collector()
    handed_on: Future[str] = Future()
    assert lane.offer(lambda: handed_on, done, inline=True) is True
    assert lane.offer(lambda: "second", done) is True  # waits: the first is not settled
    await until(lambda: lane.busy)
    assert done.results == []
    handed_on.set_result("first")
    await until(lambda: len(done.results) == 2)
    assert done.results == ["first", "second"]

    failed: Future[str] = Future()
    failed.set_exception(ValueError("phase two failed"))
    assert lane.offer(lambda: failed, done) is True  # from a pool thread this time

    def refuses() -> Future[str]:
        raise KeyError("phase one failed")

    assert lane.offer(refuses, done, inline=True) is True
    await until(lambda: len(done.results) == 4)
    assert isinstance(done.results[2], ValueError) and isinstance(done.results[3], KeyError)
