"""The player endpoint `/ws/play/{id}?token=...`: text commands and binary JPEG frames.

Text messages are parsed strictly (stream.protocol.client) and dispatched to their handlers
(stream.web.player_messages). Binary frames, and `landmarks` messages (edge mode: the page found the
hand itself), are rate-limited per connection (token bucket), then handed to the player's `FrameLane`:
recognition runs in the shared thread pool and `_frame_done` runs back on the event loop, where a
fired command goes through the SAME `Session.move` as a keyboard move (source "gesture").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial

from starlette.websockets import WebSocket

from model.frames import FrameError
from model.recognizer import RecognitionResult, Recognizer, RecognizerClosed, RecognizerConfig
from stream.edge.connection import Connection
from stream.edge.limits import FrameGate, TokenBucket
from stream.protocol.client import LandmarksMessage, ProtocolError, parse_client_message
from stream.protocol.codes import (
    CLOSE_IDLE,
    IDLE_TIMEOUT,
    MODEL_UNAVAILABLE,
    NOT_FOUND,
    PROCESSING_FAILED,
    RATE_LIMITED,
    SHUTTING_DOWN,
    STORE_UNAVAILABLE,
    TOO_MANY_STREAMS,
)
from stream.protocol.server import FrameReply, GestureNotice
from stream.recognition.batching import Promise
from stream.recognition.pipeline import observe_frame_error, observe_recognition
from stream.sessions.session import Session
from stream.web.player_messages import PAUSED, client_hand, dispatch
from stream.web.services import Services, services_of
from stream.web.sockets import (
    NO_SUCH_SESSION,
    admitted,
    client_key,
    find_session,
    new_connection,
    refuse,
    send_error,
    welcome,
)

log = logging.getLogger(__name__)


async def play_endpoint(websocket: WebSocket) -> None:
    session = await find_session(websocket, "player")
    if session is None:
        return
    async with admitted(websocket, "player") as ok:
        if not ok:
            return
        await websocket.accept()
        if session.closed:  # reaped while we were accepting
            await refuse(websocket, NOT_FOUND, NO_SUCH_SESSION)
            return
        conn = new_connection(websocket, "player", session.latest_state)
        resumed = session.players_joined > 0  # kept in the store: true after a restart too
        profile = session.slot.profile
        kept = {"samples": profile.counts(), "donate": profile.donate}
        conn.send(welcome(websocket, "player", session.id, session.scheme, resumed, calibration=kept))
        session.attach_player(conn)
        player = PlayerHandler(websocket, session, conn)
        try:
            await conn.serve(player.read_loop())
        finally:
            session.detach_player(conn)
            if session.player is None:
                await session.release_recognition()


class PlayerHandler:
    """One player connection's reading side: commands, frames and their results."""

    def __init__(self, websocket: WebSocket, session: Session, conn: Connection) -> None:
        self.websocket = websocket
        self.session = session
        self.conn = conn
        self.services: Services = services_of(websocket)
        self.settings = self.services.settings
        self.metrics = self.services.metrics
        self.gate = FrameGate(self.settings.max_fps)
        # Text too: a burst of restarts on a 40x40 maze would otherwise flood every outbox.
        self.text_gate = FrameGate(self.settings.max_text_per_s)
        self.address = client_key(websocket)
        self.busy_notice = TokenBucket(0.5, 1.0)  # `too_many_streams` at most every 2 s
        self.seq = 0
        self.dropped = 0  # frames of this connection never processed (rate limited or superseded)
        self._gesture_interval_s = self.settings.spectator_gesture_interval_ms / 1000.0
        self._loop = asyncio.get_running_loop()  # where this player's classified hands are settled

    def error(self, code: str, message: str) -> None:
        send_error(self.conn, self.metrics, code, message)

    async def read_loop(self) -> None:
        idle_s = self.settings.idle_timeout_s
        while True:
            try:
                async with asyncio.timeout(idle_s if idle_s > 0 else None):
                    message = await self.websocket.receive()
            except TimeoutError:
                self.error(IDLE_TIMEOUT, f"nothing received for {idle_s:g} s")
                self.conn.close(CLOSE_IDLE, "idle")
                return
            if message["type"] == "websocket.disconnect":
                return
            if not self.conn.is_open:
                continue  # replaced or closing: ignore what is still in flight
            self.session.touch()
            data = message.get("bytes")
            if data is not None:
                self.on_frame(data)
            else:
                self.on_text(message.get("text") or "")
            # receive() does not suspend while messages are buffered: yield once per message so the
            # replies go out between a burst's messages and other sessions are not starved by it.
            await asyncio.sleep(0)

    # --- text commands ------------------------------------------------------------------------
    def on_text(self, text: str) -> None:
        admission = self.text_gate.admit()
        if not admission.accepted:
            if admission.notify:
                self.error(
                    RATE_LIMITED,
                    f"more than {self.settings.max_text_per_s:g} messages/s: extra messages are ignored",
                )
            return
        try:
            command = parse_client_message(text, self.settings.max_text_bytes)
        except ProtocolError as exc:
            self.error(exc.code, exc.message)
            return
        dispatch(self, command)

    # --- frames and landmarks -----------------------------------------------------------------
    def on_frame(self, data: bytes) -> None:
        """A JPEG camera frame: landmarks are found here, by the player's own hand tracker."""
        self.metrics.frames_received.inc()
        received = self._admit_observation()
        if received is None or not self._ensure_recognition(needs_tracker=True):
            return
        recognizer = self.session.slot.recognizer
        assert recognizer is not None
        # The recognizer validates size, magic and dimensions itself (FrameError) in the pool thread;
        # the hand found there joins the other players' in the classifier's next batch.
        self._offer(self.services.pipeline.classify.phase_one(recognizer, partial(recognizer.observe, data),
                                                              received, self._loop))

    def on_landmarks(self, message: LandmarksMessage) -> None:
        """Edge mode: the page found the hand itself; no image, no tracker (message validated)."""
        self.metrics.landmarks_received.inc()
        received = self._admit_observation()
        if received is None or not self._ensure_recognition(needs_tracker=False):
            return
        recognizer = self.session.slot.recognizer
        assert recognizer is not None
        # Nothing to decode or detect: the landmarks go from the event loop straight to the classifier.
        self._offer(self.services.pipeline.classify.phase_one(
            recognizer, partial(recognizer.observe_landmarks, client_hand(message)), received, self._loop),
            inline=True)

    def _admit_observation(self) -> float | None:
        """Frames and landmarks share one rate cap (GM_MAX_FPS) and one sequence of numbers; the time
        it was received, or None when it is dropped."""
        self.seq += 1  # every observation gets a number, even one that is dropped right here
        admission = self.gate.admit()
        if not admission.accepted:
            self.dropped += 1
            self.metrics.frames_dropped.labels(reason="rate_limited").inc()
            if admission.notify:
                self.error(
                    RATE_LIMITED, f"more than {self.settings.max_fps:g} frames/s: extra frames are dropped"
                )
            return None
        if self.services.models is None:
            self.error(MODEL_UNAVAILABLE, "no gesture model is loaded: use keyboard moves")
            return None
        received = time.monotonic()
        self.session.slot.last_frame_at = received
        return received

    def _offer(self, job: Callable[[], Promise], *, inline: bool = False) -> None:
        lane = self.session.slot.lane
        assert lane is not None
        if not lane.offer(job, partial(self._frame_done, self.seq), inline=inline):
            self.dropped += 1  # superseded: the pipeline counts it in frames_dropped{reason="superseded"}

    def _ensure_recognition(self, *, needs_tracker: bool) -> bool:
        """A recognizer and lane for this player, and for JPEG frames a place in the tracker budget
        (stream.edge.trackers); landmarks from the page need no tracker and take no place."""
        session, services = self.session, self.services
        slot = session.slot
        if not slot.recognising:
            if services.pipeline.closed or session.closed:
                self.error(SHUTTING_DOWN, "the server is shutting down")
                self.dropped += 1
                return False
            config = RecognizerConfig.from_settings(self.settings, scheme=session.scheme)
            # Models are read per frame: the poller may install a new one later.
            recognizer = Recognizer(lambda: services.models.current, config, profile=slot.profile)
            slot.start_recognition(recognizer, services.pipeline.lane())
        if needs_tracker and not slot.holds_tracker_place:
            release = services.trackers.acquire(self.address)
            if release is None:
                self.dropped += 1
                self.metrics.frames_dropped.labels(reason="no_tracker").inc()
                if self.busy_notice.allow():  # said now and then, not for every frame
                    self.error(TOO_MANY_STREAMS, "too many cameras are streaming here right now: play "
                               "with the keyboard, or try the camera again in a moment")
                return False
            slot.grant_tracker_place(release)
        return True

    async def _frame_done(self, seq: int, outcome: RecognitionResult | BaseException) -> None:
        if isinstance(outcome, FrameError):
            observe_frame_error(self.metrics, outcome.code)
            self.error(outcome.code, outcome.message)
            return
        if isinstance(outcome, RecognizerClosed):
            return  # the player left while this frame waited: nobody to answer, nothing went wrong
        if isinstance(outcome, BaseException):
            log.error("frame processing failed", exc_info=outcome)
            self.error(PROCESSING_FAILED, "this frame could not be processed")
            return
        result = outcome
        # Landmarks are not echoed to a client that found them itself (edge mode): it draws its own.
        echo = self.settings.send_landmarks and not result.seen_by_client
        observe_recognition(self.metrics, result)
        session = self.session
        session.slot.feedback.observe(result)  # the frames an undo learns from
        self.services.drift.observe(result)
        self.conn.send(
            FrameReply(
                seq=seq,
                hand=result.hand,
                gesture=result.gesture,
                confidence=round(result.confidence, 4),
                command=result.command.value if result.command is not None else None,
                processing_ms=round(result.stages_ms.get("total", 0.0), 2),
                dropped=self.dropped,
                landmarks=result.landmarks if echo else None,
            )
        )
        # Only the connection that is still the player may move (a replaced one's late frame may not).
        if session.player is self.conn and not session.closed:
            shown = result.gesture if result.hand else None
            session.hand_seen(shown)
            session.slot.calibration_frame(shown)
            if result.command is not None and session.paused:
                self.error(STORE_UNAVAILABLE, PAUSED)
            elif result.command is not None and session.gesture_move(result.command) is not None:
                self._gesture_moved(result)
            session.observe_hand(result.direction if result.hand else None)
        if session.gesture_notice_due(self._gesture_interval_s):
            # The skeleton rides on these throttled notices, so it reaches spectators at a reduced rate.
            notice = GestureNotice(
                result.gesture, round(result.confidence, 4), result.hand, session.share_hand, result.landmarks
            )
            session.publish(notice, spectators_only=True)

    def _gesture_moved(self, result: RecognitionResult) -> None:
        """A recognised gesture fired a move: count it and remember its frames for a possible undo."""
        gesture = result.gesture or "unknown"
        self.metrics.gesture_moves.labels(gesture=gesture).inc()
        models = self.services.models
        version = str(models.current.info.version) if models is not None else ""
        direction = result.command.value if result.command is not None else ""
        self.session.slot.feedback.gesture_moved(gesture, result.confidence, direction, version)

