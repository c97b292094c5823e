"""One player's recognition: JPEG bytes -> landmarks -> gesture -> smoothed move command.

A `Recognizer` belongs to one video stream (its HandTracker keeps tracking state and its Smoother
keeps the hold). `process` is blocking CPU work: the server runs it in the shared thread pool, one
frame at a time per Recognizer (the session's FrameLane guarantees that).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from maze import Direction
from model.frames import FrameStats, decode_jpeg, frame_stats
from model.landmarks import Hand, HandTracker
from model.schemes import DEFAULT_COUNTING_MAP, SCHEMES, counting_table, direction_for
from model.smoothing import Smoother, SmoothingConfig

if TYPE_CHECKING:
    from model.classifier import GestureClassifier
    from model.personal import PlayerProfile


class RecognizerClosed(RuntimeError):
    """A frame reached a recognizer that was closed meanwhile (its player left): not an error."""


@dataclass(frozen=True)
class RecognizerConfig:
    scheme: str = "counting"
    counting_map: tuple[tuple[str, str], ...] = DEFAULT_COUNTING_MAP
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    model_complexity: int = 1
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    static_image_mode: bool = False  # True: detect from scratch every frame (no tracking)
    max_frame_bytes: int = 512 * 1024
    max_frame_width: int = 1920
    max_frame_height: int = 1920

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; expected one of {SCHEMES}")
        counting_table(self.counting_map)  # fails early on a bad direction name

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RecognizerConfig:
        """From `stream.settings.Settings` (any object with its field names); model/ never reads env."""
        values: dict[str, Any] = dict(
            scheme=settings.default_scheme,
            counting_map=tuple(settings.counting_map),
            smoothing=SmoothingConfig.from_settings(settings),
            model_complexity=settings.model_complexity,
            min_detection_confidence=settings.min_detection_confidence,
            min_tracking_confidence=settings.min_tracking_confidence,
            max_frame_bytes=settings.max_frame_bytes,
            max_frame_width=settings.max_frame_width,
            max_frame_height=settings.max_frame_height,
        )
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class RecognitionResult:
    hand: bool
    gesture: str | None  # classifier label (None without a hand)
    confidence: float  # classifier confidence (0.0 without a hand)
    command: Direction | None  # the move to make now (after smoothing), usually None
    landmarks: list[list[float]] | None  # 21 normalised [x, y] (unmirrored image), None without a hand
    handedness: str | None
    stages_ms: dict[str, float]  # decode, landmarks, classify, total (client landmarks: classify, total)
    stats: FrameStats | None  # None: the landmarks came from the client (no image was seen)
    direction: Direction | None = None  # this frame's direction under the scheme, before smoothing
    hand_detail: Hand | None = None  # the full landmarks (z, pixel coordinates) for callers that want them

    @classmethod
    def timed(
        cls,
        hand: Hand | None,
        classified: tuple[str | None, float, Direction | None],
        command: Direction | None,
        stats: FrameStats,
        marks: tuple[float, float, float, float],
    ) -> RecognitionResult:
        """Assemble a result from `perf_counter` marks taken before decode, landmarks, classify and after."""
        t0, t1, t2, t3 = marks
        stages = {
            "decode": (t1 - t0) * 1000.0,
            "landmarks": (t2 - t1) * 1000.0,
            "classify": (t3 - t2) * 1000.0,
            "total": (t3 - t0) * 1000.0,
        }
        return cls._of(hand, classified, command, stats, stages)

    @classmethod
    def _of(
        cls,
        hand: Hand | None,
        classified: tuple[str | None, float, Direction | None],
        command: Direction | None,
        stats: FrameStats | None,
        stages: dict[str, float],
    ) -> RecognitionResult:
        gesture, confidence, direction = classified
        return cls(
            hand=hand is not None,
            gesture=gesture,
            confidence=confidence,
            command=command,
            landmarks=hand.xy_list() if hand is not None else None,
            handedness=hand.handedness if hand is not None else None,
            stages_ms=stages,
            stats=stats,
            direction=direction,
            hand_detail=hand,
        )


class Recognizer:
    def __init__(
        self,
        classifier_source: Callable[[], GestureClassifier],
        config: RecognizerConfig | None = None,
        *,
        tracker_factory: Callable[[], HandTracker] | None = None,
        profile: PlayerProfile | None = None,
    ) -> None:
        self.config = config or RecognizerConfig()
        self.profile = profile  # per-player calibration (owned by the session; None: global model only)
        self._classifier_source = classifier_source
        self._tracker_factory = tracker_factory or self._default_tracker
        self._tracker: HandTracker | None = None
        self._smoother = Smoother(self.config.smoothing)
        self._scheme = self.config.scheme
        self._counting = counting_table(self.config.counting_map)
        self._lock = threading.Lock()  # serialises process() and close()
        self._closed = False

    @property
    def scheme(self) -> str:
        return self._scheme

    def set_scheme(self, name: str) -> None:
        """Switch scheme; the current hold is dropped so nothing fires from the old mapping."""
        if name not in SCHEMES:
            raise ValueError(f"unknown scheme {name!r}; expected one of {SCHEMES}")
        self._scheme = name
        self._smoother.reset()

    def _default_tracker(self) -> HandTracker:
        c = self.config
        return HandTracker(
            model_complexity=c.model_complexity,
            min_detection_confidence=c.min_detection_confidence,
            min_tracking_confidence=c.min_tracking_confidence,
            static_image_mode=c.static_image_mode,
        )

    def process(self, jpeg: bytes, now: float) -> RecognitionResult:
        """Recognise one frame taken at `now` (monotonic seconds). Raises FrameError for bad input."""
        with self._lock:
            if self._closed:
                raise RecognizerClosed("Recognizer is closed")
            smooth = partial(self._smooth, now=now)
            return recognise_frame(jpeg, self.config, self._detect, self._classify, smooth)

    def process_landmarks(self, hand: Hand | None, now: float) -> RecognitionResult:
        """Recognise landmarks a client found itself (edge mode: the image never left its device).
        The same classifier, open-set head and smoothing as a frame's; no tracker is ever made."""
        with self._lock:
            if self._closed:
                raise RecognizerClosed("Recognizer is closed")
            return recognise_landmarks(hand, self._classify, partial(self._smooth, now=now))

    def _detect(self, rgb: np.ndarray) -> Hand | None:
        if self._tracker is None:  # lazily, in the worker thread: creating a graph takes ~50 ms
            self._tracker = self._tracker_factory()
        return self._tracker.detect(rgb)

    def _classify(self, hand: Hand | None) -> tuple[str | None, float, Direction | None]:
        return classify_hand(hand, self._classifier_source, self._scheme, self._counting, self.profile)

    def _smooth(
        self, hand: Hand | None, classified: tuple[str | None, float, Direction | None], *, now: float
    ) -> Direction | None:
        gesture, confidence, direction = classified
        # `pointing` is decided by geometry, so its evidence is MediaPipe's hand score, not the
        # classifier's confidence in a label it does not use (a sideways finger may be unusual).
        evidence = hand.score if self._scheme == "pointing" and hand is not None else confidence
        return self._smoother.update(gesture, evidence, direction, now)

    def close(self) -> None:
        """Release the tracker. Safe from any thread; waits for a frame being processed to finish."""
        with self._lock:
            self._closed = True
            tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.close()


Classified = tuple[str | None, float, "Direction | None"]


def recognise_frame(
    jpeg: bytes,
    config: RecognizerConfig,
    detect: Callable[[np.ndarray], Hand | None],
    classify: Callable[[Hand | None], Classified],
    smooth: Callable[[Hand | None, Classified], Direction | None] | None = None,
) -> RecognitionResult:
    """THE recognition path, for streams (`Recognizer.process`: tracking, smoothing) and single
    images (`POST /predict`: static detection, no smoothing): decode -> landmarks -> gesture
    (-> command). Raises FrameError for bad input."""
    t0 = time.perf_counter()
    rgb = decode_jpeg(jpeg, config.max_frame_bytes, config.max_frame_width, config.max_frame_height)
    stats = frame_stats(rgb, len(jpeg))
    t1 = time.perf_counter()
    hand = detect(rgb)
    t2 = time.perf_counter()
    classified = classify(hand)
    command = smooth(hand, classified) if smooth is not None else None
    t3 = time.perf_counter()
    return RecognitionResult.timed(hand, classified, command, stats, (t0, t1, t2, t3))


def recognise_landmarks(
    hand: Hand | None,
    classify: Callable[[Hand | None], Classified],
    smooth: Callable[[Hand | None, Classified], Direction | None],
) -> RecognitionResult:
    """The same path from the landmarks on: what `recognise_frame` does after detection."""
    t0 = time.perf_counter()
    classified = classify(hand)
    command = smooth(hand, classified)
    ms = (time.perf_counter() - t0) * 1000.0
    # No image was seen here: no frame statistics, and classification is the whole time.
    return RecognitionResult._of(hand, classified, command, None, {"classify": ms, "total": ms})


def classify_hand(
    hand: Hand | None,
    classifier_source: Callable[[], GestureClassifier],
    scheme: str,
    counting: dict[str, Direction] | Iterable[tuple[str, str]],
    profile: PlayerProfile | None = None,
) -> tuple[str | None, float, Direction | None]:
    """(gesture, confidence, direction) for one frame's hand; shared by streams and POST /predict.

    With a player `profile`: while it is recording, the frame becomes a calibration sample (and is
    classified by the global model); otherwise the player's adapter corrects the global model."""
    if hand is None:
        return None, 0.0, None
    from model.features import FeatureError, landmark_features  # the training pipeline's features

    try:
        features = landmark_features(hand.normalized, width=hand.width, height=hand.height)
    except FeatureError:  # degenerate landmarks: a hand, but no gesture to read from it
        return None, 0.0, None
    # Asked per frame, so a newly promoted model is used from the next frame on.
    classifier = classifier_source()
    adapter = None
    recording = profile is not None and profile.recording is not None
    if profile is not None:
        if recording:
            profile.record(features, hand.pixels.round(2).tolist())  # pixels keep the aspect ratio
        else:
            adapter = profile.adapter_for(classifier)
    prediction = classifier.predict(features, adapter)
    # A calibration frame is shown on request, not meant as a move: no direction while recording.
    direction = None if recording else direction_for(scheme, prediction.gesture, hand, counting)
    return prediction.gesture, float(prediction.confidence), direction
