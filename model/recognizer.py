"""One player's recognition: JPEG bytes -> landmarks -> gesture -> smoothed move command.

A `Recognizer` belongs to one video stream (its HandTracker keeps tracking state and its Smoother
keeps the hold). Recognition has two phases, so a server can classify many players' hands in one pass
over the model (`recognise_many`): `observe` (decode, landmarks: per player), then the features and
the classifier for many hands at once, and each player's `conclude` (direction -> smoothing).
`process` does all of it for one frame. All of it is blocking CPU work, one frame at a time per
Recognizer (the server's FrameLane guarantees that).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from maze import Direction
from model.features import proportional_xy, usable_features  # the training pipeline's features
from model.frames import FrameStats, decode_jpeg, frame_stats
from model.landmarks import Hand, HandTracker
from model.schemes import DEFAULT_COUNTING_MAP, SCHEMES, counting_table, direction_for
from model.smoothing import Smoother, SmoothingConfig

if TYPE_CHECKING:
    from model.classifier import GestureClassifier, Prediction
    from model.personal import PlayerAdapter, PlayerProfile


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
    handedness: str | None
    stages_ms: dict[str, float]  # decode, landmarks, classify, total (client landmarks: classify, total)
    stats: FrameStats | None  # None: the landmarks came from the client (no image was seen)
    direction: Direction | None = None  # this frame's direction under the scheme, before smoothing
    hand_detail: Hand | None = None  # the full landmarks (z, pixel coordinates) for callers that want them

    @cached_property
    def landmarks(self) -> list[list[float]] | None:
        """21 normalised [x, y] (unmirrored image), rounded for JSON; None without a hand. Made on
        first request (a frame's reply and a spectator notice share it): a reply to a client's own
        landmarks does not carry them back."""
        return self.hand_detail.xy_list() if self.hand_detail is not None else None

    @property
    def seen_by_client(self) -> bool:
        """The landmarks came from the client (edge mode): no image reached the server."""
        return self.stats is None

    @classmethod
    def of(
        cls, observation: Observation, classified: Classified, command: Direction | None, finished: float
    ) -> RecognitionResult:
        """Assemble a result; `finished` is the `perf_counter` time the answer was complete."""
        o = observation
        if o.decoded is None:  # landmarks from the client: no image was seen, classification is all
            stages = {"classify": (finished - o.started) * 1000.0}
        else:
            stages = {"decode": (o.decoded - o.started) * 1000.0, "landmarks": (o.found - o.decoded) * 1000.0,
                      "classify": (finished - o.found) * 1000.0}
        stages["total"] = (finished - o.started) * 1000.0
        gesture, confidence, direction = classified
        hand = o.hand
        return cls(
            hand=hand is not None,
            gesture=gesture,
            confidence=confidence,
            command=command,
            handedness=hand.handedness if hand is not None else None,
            stages_ms=stages,
            stats=o.stats,
            direction=direction,
            hand_detail=hand,
        )


@dataclass(frozen=True)
class Observation:
    """Phase one of recognising a frame (or a client's landmarks): what the classifier will read."""

    hand: Hand | None
    xy: np.ndarray | None  # (21, 2) pixel-proportional x,y the features are made of; None: no hand
    recording: bool  # a calibration sample of the player's: classified, never given a direction
    stats: FrameStats | None  # None: the landmarks came from the client
    started: float  # perf_counter marks: received by the recognizer, decoded, hand found
    decoded: float | None
    found: float


Classified = tuple[str | None, float, "Direction | None"]
NOTHING: Classified = (None, 0.0, None)


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
        return self._one(self.observe(jpeg), now)

    def process_landmarks(self, hand: Hand | None, now: float) -> RecognitionResult:
        """Recognise landmarks a client found itself (edge mode: the image never left its device).
        The same classifier, open-set head and smoothing as a frame's; no tracker is ever made."""
        return self._one(self.observe_landmarks(hand), now)

    def _one(self, observation: Observation, now: float) -> RecognitionResult:
        outcome = recognise_many([(self, observation, now)])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def observe(self, jpeg: bytes) -> Observation:
        """Phase one for a frame: decode, find the hand (this player's tracker)."""
        with self._lock:
            self._check_open()
            return observe_frame(jpeg, self.config, self._detect, self.profile)

    def observe_landmarks(self, hand: Hand | None) -> Observation:
        """Phase one for landmarks a client found: nothing to decode or detect."""
        with self._lock:
            self._check_open()
            now = time.perf_counter()
            return observe_hand(hand, now, None, None, hand_found=now, profile=self.profile)

    def classifier(self) -> GestureClassifier:
        """The model to read this player's hand with (asked per frame: a promoted model is used next)."""
        return self._classifier_source()

    def adapter(self, observation: Observation, classifier: GestureClassifier) -> PlayerAdapter | None:
        """This player's calibration for `classifier`, unless the frame is itself a calibration sample."""
        if self.profile is None or observation.recording:
            return None
        return self.profile.adapter_for(classifier)

    def conclude(
        self, observation: Observation, features: np.ndarray | None, prediction: Prediction | None, now: float
    ) -> RecognitionResult:
        """Phase two, after the classifier: a calibration sample is kept, the answer's direction under
        this player's scheme, then the hold (smoothing)."""
        with self._lock:
            self._check_open()
            if observation.recording and features is not None and self.profile is not None:
                hand = observation.hand
                assert hand is not None
                self.profile.record(features, hand.pixels.round(2).tolist())  # pixels keep the aspect ratio
            classified = answer(observation, prediction, self._scheme, self._counting)
            gesture, confidence, direction = classified
            hand = observation.hand
            # `pointing` is decided by geometry, so its evidence is MediaPipe's hand score, not the
            # classifier's confidence in a label it does not use (a sideways finger may be unusual).
            evidence = hand.score if self._scheme == "pointing" and hand is not None else confidence
            command = self._smoother.update(gesture, evidence, direction, now)
            return RecognitionResult.of(observation, classified, command, time.perf_counter())

    def _check_open(self) -> None:
        if self._closed:
            raise RecognizerClosed("Recognizer is closed")

    def _detect(self, rgb: np.ndarray) -> Hand | None:
        if self._tracker is None:  # lazily, in the worker thread: creating a graph takes ~50 ms
            self._tracker = self._tracker_factory()
        return self._tracker.detect(rgb)

    def close(self) -> None:
        """Release the tracker. Safe from any thread; waits for a frame being processed to finish."""
        with self._lock:
            self._closed = True
            tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.close()



Work = tuple["Recognizer", Observation, float]  # a player's recognizer, its observation, received at


def recognise_many(work: Sequence[Work]) -> list[RecognitionResult | BaseException]:
    """Phase two for many players at once: the features of every hand in one computation, one pass
    over each model, then each player's own `conclude`. Item n's outcome is its result or the
    exception it raised (e.g. RecognizerClosed: that player left meanwhile); one player's failure is
    only theirs. A single frame (`Recognizer.process`) takes this same path."""
    features: list[np.ndarray | None] = [None] * len(work)
    predictions: list[Prediction | None] = [None] * len(work)
    with_hand = [n for n, (_, observation, _) in enumerate(work) if observation.xy is not None]
    if with_hand:
        computed, usable = usable_features(np.stack([work[n][1].xy for n in with_hand]))  # type: ignore[misc]
        for n, row in zip(np.asarray(with_hand)[usable].tolist(), computed, strict=True):
            features[n] = row  # a degenerate hand (all points at the wrist) stays None: no gesture
    by_model: dict[int, tuple[GestureClassifier, list[int]]] = {}
    for n, (recognizer, _, _) in enumerate(work):
        if features[n] is not None:
            classifier = recognizer.classifier()
            by_model.setdefault(id(classifier), (classifier, []))[1].append(n)
    for classifier, rows in by_model.values():
        adapters = [work[n][0].adapter(work[n][1], classifier) for n in rows]
        answers = classifier.predict_many(np.stack([features[n] for n in rows]), adapters)  # type: ignore[misc]
        for n, prediction in zip(rows, answers, strict=True):
            predictions[n] = prediction
    outcomes: list[RecognitionResult | BaseException] = []
    for (recognizer, observation, now), row, prediction in zip(work, features, predictions, strict=True):
        try:
            outcomes.append(recognizer.conclude(observation, row, prediction, now))
        except Exception as exc:  # contained: reported to that player's frame only
            outcomes.append(exc)
    return outcomes


def observe_frame(
    jpeg: bytes,
    config: RecognizerConfig,
    detect: Callable[[np.ndarray], Hand | None],
    profile: PlayerProfile | None = None,
) -> Observation:
    """Phase one of THE recognition path, for streams (a tracker per player) and single images
    (`POST /predict`: static detection): decode -> landmarks. Raises FrameError."""
    t0 = time.perf_counter()
    rgb = decode_jpeg(jpeg, config.max_frame_bytes, config.max_frame_width, config.max_frame_height)
    stats = frame_stats(rgb, len(jpeg))
    t1 = time.perf_counter()
    hand = detect(rgb)
    return observe_hand(hand, t0, t1, stats, hand_found=time.perf_counter(), profile=profile)


def observe_hand(
    hand: Hand | None,
    started: float,
    decoded: float | None,
    stats: FrameStats | None,
    *,
    hand_found: float,
    profile: PlayerProfile | None = None,
) -> Observation:
    """A found hand as the classifier will read it. While the player's `profile` is recording, the
    hand is a calibration sample too (still classified and shown, never a move)."""
    xy = None if hand is None else proportional_xy(hand.normalized, width=hand.width, height=hand.height)
    recording = hand is not None and profile is not None and profile.recording is not None
    return Observation(hand, xy, recording, stats, started, decoded, hand_found)


def answer(
    observation: Observation,
    prediction: Prediction | None,
    scheme: str,
    counting: dict[str, Direction] | Iterable[tuple[str, str]],
) -> Classified:
    """(gesture, confidence, direction) for one observation's prediction under `scheme`."""
    if prediction is None:
        return NOTHING
    # A calibration frame is shown on request, not meant as a move: no direction while recording.
    direction = None if observation.recording else direction_for(scheme, prediction.gesture, observation.hand,
                                                                   counting)
    return prediction.gesture, float(prediction.confidence), direction


def recognise_image(
    jpeg: bytes,
    config: RecognizerConfig,
    detect: Callable[[np.ndarray], Hand | None],
    classifier: GestureClassifier,
    scheme: str,
    counting: dict[str, Direction] | Iterable[tuple[str, str]],
) -> RecognitionResult:
    """One still image (`POST /predict`): the stream's path without tracking, calibration or smoothing."""
    observation = observe_frame(jpeg, config, detect)
    prediction = None
    if observation.xy is not None:
        features, usable = usable_features(observation.xy[None])
        prediction = classifier.predict(features[0]) if usable[0] else None
    return RecognitionResult.of(observation, answer(observation, prediction, scheme, counting), None,
                                time.perf_counter())
