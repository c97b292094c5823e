"""Feedback from play: "undo — that was wrong" takes back a gesture move and records the correction.

Per session (`SessionFeedback`, on the event loop): the player's consent flag, a small ring of the most
recent hand frames (landmarks only, never images; `GM_FEEDBACK_FRAMES`), and the gesture move that
may still be undone with the frames that fired it. On `{"type":"undo","label":...}` the game undoes
the move (the rule is `maze.Game.undo`: last gesture move, within `GM_UNDO_WINDOW_S`), every
connection gets the new state, and — only if the player opted in with `{"type":"consent",
"feedback":true}` — the correction goes to the `FeedbackRecorder`, which writes it to the SQLAlchemy
store (`model.feedback`) from its own thread with a bounded number of writes pending.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from model.feedback import FeedbackEvent, FeedbackStore
from stream.metrics import Metrics
from stream.protocol import BAD_FIELD, NOTHING_TO_UNDO, ConsentMessage, UndoMessage, Undone

if TYPE_CHECKING:
    from model.landmarks import Hand
    from model.recognizer import RecognitionResult
    from stream.sessions.registry import Session

log = logging.getLogger(__name__)

NO_GESTURE = "no_gesture"  # a correction may say "that was no gesture at all"
MAX_PENDING_WRITES = 32


def _xy(hand: Hand) -> np.ndarray:
    """Pixel-proportional x,y (what `model.features.features_from_xy` and training take)."""
    return np.asarray(hand.normalized, dtype=np.float64)[:, :2] * np.array([hand.width, hand.height])


@dataclass(frozen=True, slots=True)
class FiredMove:
    gesture: str
    confidence: float
    direction: str
    frames: tuple[Hand, ...]
    model_version: str


class SessionFeedback:
    """One session's consent, recent hand frames and last fired gesture move (event loop only)."""

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


def session_feedback(session: Session, frames: int) -> SessionFeedback:
    if session.feedback is None:
        session.feedback = SessionFeedback(frames)
    return session.feedback


class FeedbackRecorder:
    """Writes corrections to the store from one worker thread; at most MAX_PENDING_WRITES queued."""

    def __init__(self, url: str, max_events: int, metrics: Metrics | None = None) -> None:
        self.url = url
        self.max_events = max_events
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
        self._store: FeedbackStore | None = None  # opened in the worker thread on first write
        self._pending = 0

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.feedback.labels(result=result).inc()

    def submit(self, event: FeedbackEvent) -> bool:
        """Queue one event (event loop); False when too many writes are pending (dropped, counted)."""
        if self._pending >= MAX_PENDING_WRITES:
            self._count("dropped")
            return False
        self._pending += 1
        future = self._executor.submit(self._write, event)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._done, f))
        return True

    def _write(self, event: FeedbackEvent) -> int:
        if self._store is None:
            self._store = FeedbackStore(self.url, max_events=self.max_events)
        return self._store.add(event)

    def _done(self, future: Future[int]) -> None:
        self._pending -= 1
        if future.exception() is not None:
            log.error("feedback could not be stored", exc_info=future.exception())
            self._count("error")
        else:
            self._count("stored")

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._store is not None:
            self._store.close()


def on_feedback_message(handler: Any, command: UndoMessage | ConsentMessage) -> None:
    """`undo` / `consent` from the player (called by stream.web.play.PlayerHandler on the event loop)."""
    session, settings, metrics = handler.session, handler.settings, handler.metrics
    feedback = session_feedback(session, settings.feedback_frames)
    if isinstance(command, ConsentMessage):
        feedback.consent = command.feedback
        return
    label = command.label
    models = handler.state.models
    known = set(models.current.classes) if models is not None else set()
    if label is not None and label != NO_GESTURE and label not in known:
        handler.error(BAD_FIELD, f"unknown gesture label {label!r}")
        return
    fired = feedback.fired
    undone = session.undo(settings.undo_window_s)
    if undone is None:
        handler.error(NOTHING_TO_UNDO, f"only the last gesture move of the past {settings.undo_window_s:g} s "
                      "can be undone")
        return
    feedback.fired = None
    gesture = fired.gesture if fired is not None else None
    metrics.undos.labels(gesture=gesture or "unknown").inc()
    stored = False
    if fired is None or not fired.frames:
        pass  # nothing to learn from (no recorded frames)
    elif not feedback.consent:
        metrics.feedback.labels(result="no_consent").inc()
    else:
        event = FeedbackEvent(
            predicted=fired.gesture, confidence=fired.confidence, label=label, direction=fired.direction,
            frames=[_xy(hand) for hand in fired.frames], model_version=fired.model_version,
            session_key=feedback.key,
        )
        stored = handler.state.feedback.submit(event)
    reply_after_state(session, handler.conn, Undone(undone.direction.value, gesture, label, stored))


_REPLY_WAIT_S = 10.0
_pending_replies: set[asyncio.Task[None]] = set()


def reply_after_state(session: Session, conn: Any, message: Any) -> None:
    """Send `message` to `conn` after the state the session just made. With durable sessions
    (stream.durability.journal) a state reaches the connections only once stored, while a direct
    send is queued at once: `undone` would overtake the state it describes (the player would still
    be shown where the undone move took them). So the reply waits for the journal to deliver what it holds."""
    journal = session.journal
    if journal is None:
        conn.send(message)
        return

    async def deliver() -> None:
        try:
            async with asyncio.timeout(_REPLY_WAIT_S):
                await journal.flush()
        except Exception:  # the store is away or the write failed: the journal reports that itself
            log.debug("reply sent before the journal was flushed", exc_info=True)
        conn.send(message)

    task = asyncio.get_running_loop().create_task(deliver(), name="reply-after-state")
    _pending_replies.add(task)
    task.add_done_callback(_pending_replies.discard)


def after_recognition(handler: Any, result: RecognitionResult) -> None:
    """Per recognised frame: the feedback ring and the drift window (both O(1) appends)."""
    session = handler.session
    session_feedback(session, handler.settings.feedback_frames).observe(result)
    drift = getattr(handler.state, "drift", None)
    if drift is not None:
        drift.observe(result)


def gesture_moved(handler: Any, result: RecognitionResult) -> None:
    """A recognised gesture fired a move: count it and remember its frames for a possible undo."""
    gesture = result.gesture or "unknown"
    handler.metrics.gesture_moves.labels(gesture=gesture).inc()
    models = handler.state.models
    version = str(models.current.info.version) if models is not None else ""
    direction = result.command.value if result.command is not None else ""
    session_feedback(handler.session, handler.settings.feedback_frames).gesture_moved(
        gesture, result.confidence, direction, version
    )
