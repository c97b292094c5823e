"""The player's side of a session that is not the game: recognition (a hand tracker and a frame
lane, made on the first frame and released when the player leaves), the calibration profile, and
the feedback ring that an undo learns from. All on the event loop; the tracker runs in the pool."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.landmarks import Hand
from model.personal import RELAXED, PlayerProfile
from model.recognizer import RecognitionResult, Recognizer
from stream.recognition.pipeline import FrameLane
from stream.sessions.donations import DonationBox

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """One calibration step, checked against its prompt by what the global model saw."""

    gesture: str  # the prompt
    frames: int  # frames with a hand during the step
    matched: int  # of them read as the prompt
    seen: str | None  # what was read most often instead, if anything
    accepted: bool  # False: the samples of this step were dropped

    def to_dict(self) -> dict[str, object]:
        return {"gesture": self.gesture, "frames": self.frames, "matched": self.matched, "seen": self.seen,
                "accepted": self.accepted}


# A step is refused when the hand clearly showed another gesture: most frames read as one other
# gesture and hardly any as the prompt (a player's own way of showing the prompt, which is what
# calibration is for, is read as a mix or as the prompt, not as one clear other gesture).
_REFUSE_OTHER_SHARE = 0.6
_REFUSE_PROMPT_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class FiredMove:
    gesture: str
    confidence: float
    direction: str
    frames: tuple[Hand, ...]
    model_version: str


class FeedbackRing:
    """The player's consent, recent hand frames (landmarks only) and the last fired gesture move."""

    def __init__(self, frames: int) -> None:
        self.consent = False
        self.key = secrets.token_hex(8)  # groups one player's rows without naming the session
        self._ring: deque[tuple[str, float, Hand] | None] = deque(maxlen=max(1, frames))
        self.fired: FiredMove | None = None

    def observe(self, result: RecognitionResult) -> None:
        """Remember this frame's hand (None breaks a run: frames without a hand fired nothing)."""
        hand = result.hand_detail
        if hand is None or result.gesture is None:
            self._ring.append(None)
        else:
            self._ring.append((result.gesture, result.confidence, hand))

    def gesture_moved(self, gesture: str, confidence: float, direction: str, model_version: str) -> None:
        """A gesture just moved the player: keep the newest unbroken run of frames showing it."""
        run: list[Hand] = []
        for item in reversed(self._ring):
            if item is None or item[0] != gesture:
                break
            run.append(item[2])
        self.fired = FiredMove(gesture, confidence, direction, tuple(reversed(run)), model_version)


@dataclass(frozen=True, slots=True)
class Donor:
    """Where a player's opted-in samples go and whose they are (an opaque contributor id)."""

    box: DonationBox
    contributor: str


class PlayerSlot:
    def __init__(self, feedback_frames: int = 1) -> None:
        # Per-player calibration samples (landmark features only); deleted on close unless donated.
        self.profile = PlayerProfile()
        self.feedback = FeedbackRing(feedback_frames)
        self.donor: Donor | None = None  # set with the player's opt-in (the `donate` message)
        self.recognizer: Recognizer | None = None
        self.lane: FrameLane | None = None
        self.last_frame_at = 0.0  # monotonic time of the player's last camera frame
        self.last_verdict: StepVerdict | None = None
        self._step_seen: Counter[str] = Counter()  # what the global model read during this step
        self._step_kept = 0  # samples of the prompt before this step
        self._release_budget: Callable[[], None] | None = None  # the tracker budget's ticket

    def start_step(self, gesture: str) -> None:
        """Calibration: frames from now on are samples of `gesture` (ends the step before, if any)."""
        if self.profile.recording is not None:
            self.finish_step()
        self._step_seen.clear()
        self._step_kept = self.profile.counts().get(gesture, 0)
        self.profile.recording = gesture

    def calibration_frame(self, seen: str | None) -> None:
        """A frame processed while recording: what the global model read (None: no hand)."""
        if self.profile.recording is not None and seen is not None:
            self._step_seen[seen] += 1

    def finish_step(self) -> StepVerdict | None:
        gesture, self.profile.recording = self.profile.recording, None
        if gesture is None:
            return None
        seen = self._step_seen
        frames, matched = sum(seen.values()), seen[gesture]
        other, other_frames = next(((g, n) for g, n in seen.most_common() if g != gesture), (None, 0))
        contradicted = other_frames > _REFUSE_OTHER_SHARE * frames and matched < _REFUSE_PROMPT_SHARE * frames
        accepted = frames > 0 and (gesture == RELAXED or not contradicted)
        if not accepted:
            self.profile.truncate(gesture, self._step_kept)
        self.last_verdict = StepVerdict(gesture, frames, matched, other, accepted)
        return self.last_verdict

    @property
    def recognising(self) -> bool:
        return self.lane is not None

    def start_recognition(self, recognizer: Recognizer, lane: FrameLane) -> None:
        """The player's first frame or landmarks (since it came or its recognizer was released)."""
        self.recognizer, self.lane = recognizer, lane

    @property
    def holds_tracker_place(self) -> bool:
        return self._release_budget is not None

    def grant_tracker_place(self, release_budget: Callable[[], None]) -> None:
        """JPEG frames: the recognizer will make a hand tracker in the pool; `release_budget` hands
        its place in the server's tracker budget back when the slot is released."""
        self._release_budget = release_budget

    def idle(self, now: float, idle_s: float) -> bool:
        return self.lane is not None and now - self.last_frame_at > idle_s

    def set_scheme(self, scheme: str) -> None:
        if self.recognizer is not None:
            self.recognizer.set_scheme(scheme)

    async def release(self) -> None:
        """Finish the in-flight frame and close the hand tracker (~80 MiB each); the next frame of a
        returning player makes a new one, so an absent player holds no MediaPipe graph."""
        # Taken all at once: a frame arriving while these close starts a fresh set.
        lane, recognizer, release = self.lane, self.recognizer, self._release_budget
        self.lane, self.recognizer, self._release_budget = None, None, None
        if lane is not None:
            await lane.close()
        if recognizer is not None:
            await asyncio.to_thread(_close_and_trim, recognizer)
        if release is not None:
            release()

    async def forget(self, donations_dir: Path | None, session_id: str) -> None:
        """The session is over: write donated calibration landmarks, then drop every sample."""
        profile, donor = self.profile, self.donor
        if profile.donate and donations_dir is not None and donor is not None and profile.landmarks:
            try:  # within the per-game, per-address and folder caps (stream.sessions.donations)
                path = await asyncio.to_thread(donor.box.donate, donor.contributor, session_id, profile)
                if path is not None:
                    log.info("calibration samples donated: %s", path)
            except OSError:
                log.exception("could not write donated calibration samples")
                if donor.box.metrics is not None:
                    donor.box.metrics.donations.labels(result="error").inc()
        profile.clear()


def _close_and_trim(recognizer: Recognizer) -> None:
    recognizer.close()
    # A closed MediaPipe graph's memory stays in glibc's arenas unless handed back explicitly.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
