"""The player's side of a session that is not the game: recognition (a hand tracker and a frame
lane, made on the first frame and released when the player leaves), the calibration profile, and
the feedback ring that an undo learns from. All on the event loop; the tracker runs in the pool."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.landmarks import Hand
from model.personal import PlayerProfile
from model.recognizer import RecognitionResult, Recognizer
from stream.recognition.pipeline import FrameLane
from stream.sessions.donations import DonationBox

log = logging.getLogger(__name__)


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

    def recognition(
        self, make_recognizer: Callable[[], Recognizer], make_lane: Callable[[], FrameLane]
    ) -> tuple[FrameLane, Recognizer]:
        """The lane and recognizer of this player, made on the first frame."""
        if self.lane is None or self.recognizer is None:
            self.recognizer = make_recognizer()
            self.lane = make_lane()
        return self.lane, self.recognizer

    def set_scheme(self, scheme: str) -> None:
        if self.recognizer is not None:
            self.recognizer.set_scheme(scheme)

    async def release(self) -> None:
        """Finish the in-flight frame and close the hand tracker (~80 MiB each); the next frame of a
        returning player makes a new one, so an absent player holds no MediaPipe graph."""
        lane, self.lane = self.lane, None
        if lane is not None:
            await lane.close()
        recognizer, self.recognizer = self.recognizer, None
        if recognizer is not None:
            await asyncio.to_thread(_close_and_trim, recognizer)

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
