"""What each player text message does: one handler per registered client message.

Adding a message is one registration in stream.protocol.client (type + field validators) plus one
`@on(TheMessage)` handler here; a registered message without a handler fails at import, so the two
cannot drift apart. Handlers run on the event loop and never await: they change the session and
queue replies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from model.feedback import FeedbackEvent
from model.landmarks import Hand
from model.openset import NO_GESTURE
from model.personal import RELAXED
from stream.edge.connection import Connection
from stream.edge.limits import address_key
from stream.protocol.client import (
    CalibrateMessage,
    CalibrationResetMessage,
    ClientMessage,
    ConsentMessage,
    DonateMessage,
    LandmarksMessage,
    MoveMessage,
    NextLevelMessage,
    PingMessage,
    RestartMessage,
    SchemeMessage,
    ShareHandMessage,
    UndoMessage,
    message_classes,
)
from stream.protocol.codes import (
    BAD_FIELD,
    CALIBRATING,
    NOT_PLAYING,
    NOT_WON,
    NOTHING_TO_UNDO,
    STORE_UNAVAILABLE,
)
from stream.protocol.server import CalibrationStatus, Pong, Undone
from stream.sessions.player import Donor, StepVerdict
from stream.sessions.session import Session
from stream.web.services import Services

PAUSED = "game storage is unreachable: moves are paused until it is back"


class Player(Protocol):
    """The connection a message came from (stream.web.play.PlayerHandler)."""

    session: Session
    conn: Connection
    services: Services

    def error(self, code: str, message: str) -> None: ...

    def on_landmarks(self, message: LandmarksMessage) -> None: ...


M = TypeVar("M", bound=ClientMessage)
Handler = Callable[[Player, Any], None]


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    while_paused: bool  # runs while the store is away (changes nothing that must be stored)


_ROUTES: dict[type[ClientMessage], _Route] = {}


def on(message: type[M], *, while_paused: bool = False) -> Callable[[Callable[[Player, M], None]], Handler]:
    def register(handler: Callable[[Player, M], None]) -> Handler:
        if message in _ROUTES:
            raise ValueError(f"{message.__name__} has two handlers")
        _ROUTES[message] = _Route(handler, while_paused)
        return handler

    return register


def dispatch(player: Player, message: ClientMessage) -> None:
    route = _ROUTES[type(message)]
    if player.session.paused and not route.while_paused:
        player.error(STORE_UNAVAILABLE, PAUSED)
        return
    route.handler(player, message)


def model_classes(services: Services) -> set[str]:
    return set(services.models.current.classes) if services.models is not None else set()


# --- the game ---------------------------------------------------------------------------------
@on(MoveMessage)
def _move(player: Player, message: MoveMessage) -> None:
    if player.session.calibrating:
        player.error(CALIBRATING, "the game is paused while you calibrate: finish or cancel it first")
        return
    if player.session.move(message.direction, "keyboard") is None:
        player.error(NOT_PLAYING, "the level is won; send next_level (or lower your hand) to go on")


@on(RestartMessage)
def _restart(player: Player, message: RestartMessage) -> None:
    player.session.restart()


@on(NextLevelMessage)
def _next_level(player: Player, message: NextLevelMessage) -> None:
    if not player.session.next_level():
        player.error(NOT_WON, "next_level is only possible after winning the level")


@on(SchemeMessage)
def _scheme(player: Player, message: SchemeMessage) -> None:
    player.session.set_scheme(message.scheme)


@on(ShareHandMessage)
def _share_hand(player: Player, message: ShareHandMessage) -> None:
    player.session.set_share_hand(message.enabled)


@on(PingMessage, while_paused=True)
def _ping(player: Player, message: PingMessage) -> None:
    player.conn.send(Pong(message.t))


# --- edge mode: the page found the hand ------------------------------------------------------
@on(LandmarksMessage, while_paused=True)  # like frames: recognised while paused, moves are refused later
def _landmarks(player: Player, message: LandmarksMessage) -> None:
    player.on_landmarks(message)


def client_hand(message: LandmarksMessage) -> Hand | None:
    """The validated message as the `Hand` the server's own tracker would have produced."""
    seen = message.hand
    if seen is None:
        return None
    normalized = np.array(seen.points, dtype=np.float32)
    return Hand(normalized, message.width, message.height, seen.handedness, seen.score)


# --- feedback: "undo - that was wrong" --------------------------------------------------------
@on(ConsentMessage)
def _consent(player: Player, message: ConsentMessage) -> None:
    player.session.slot.feedback.consent = message.feedback


def contributor_address(player: Player) -> str:
    """The client address a player's feedback and donations are counted under (a limiter key, IPv6
    by /64; never stored: the recorder keeps only its keyed hash): the play socket's peer, else the
    address that created the session."""
    websocket = getattr(player, "websocket", None)
    client = getattr(websocket, "client", None)
    if client is not None and client.host:
        return address_key(client.host)
    return player.session.owner or "unknown"


def _xy(hand: Hand) -> np.ndarray:
    """Pixel-proportional x,y (what `model.features.features_from_xy` and training take)."""
    return np.asarray(hand.normalized, dtype=np.float64)[:, :2] * np.array([hand.width, hand.height])


@on(UndoMessage)
def _undo(player: Player, message: UndoMessage) -> None:
    """Take back the last gesture move (maze.Game.undo's rule, within GM_UNDO_WINDOW_S); with the
    player's consent, the correction (the frames that fired it, landmarks only) is recorded."""
    session, services = player.session, player.services
    settings, metrics = services.settings, services.metrics
    label = message.label
    if label is not None and label != NO_GESTURE and label not in model_classes(services):
        player.error(BAD_FIELD, f"unknown gesture label {label!r}")
        return
    feedback = session.slot.feedback
    fired = feedback.fired
    undone = session.undo(settings.undo_window_s)
    if undone is None:
        player.error(NOTHING_TO_UNDO, f"only the last gesture move of the past {settings.undo_window_s:g} s "
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
        # Within the per-game and per-address caps (stream.recognition.feedback), else not stored.
        stored = services.feedback.submit(event, contributor_address(player))
    reply = Undone(
        undone.direction.value, gesture, label, stored, steps=undone.steps, moves=len(undone.moves),
        paused=session.gestures_paused,
    )
    conn = player.conn
    # After the state it describes: a durable session delivers states only once stored.
    session.publisher.then(lambda: conn.send(reply))


# --- per-player calibration (model.personal) --------------------------------------------------
def _calibration_status(player: Player, verdict: StepVerdict | None = None) -> None:
    profile = player.session.slot.profile
    step = verdict.to_dict() if verdict is not None else None
    player.conn.send(CalibrationStatus(profile.recording, profile.counts(), profile.donate, step))


@on(CalibrateMessage)
def _calibrate(player: Player, message: CalibrateMessage) -> None:
    """Each step is checked against its prompt when it ends (the reply's `step`): a step where the
    hand clearly showed another gesture is dropped, so a careless calibration cannot teach a misread."""
    gesture, session = message.gesture, player.session
    if gesture is not None and gesture != RELAXED and gesture not in model_classes(player.services):
        player.error(BAD_FIELD, f"gesture must be null, {RELAXED!r} or one of the model's classes")
        return
    verdict = session.slot.finish_step() if gesture is not None and session.calibrating else None
    if gesture is None:
        verdict = session.stop_calibration()
    else:
        session.start_calibration(gesture)
    _calibration_status(player, verdict)


@on(CalibrationResetMessage)
def _calibration_reset(player: Player, message: CalibrationResetMessage) -> None:
    player.session.stop_calibration()
    player.session.slot.profile.clear()
    _calibration_status(player)


@on(DonateMessage)
def _donate(player: Player, message: DonateMessage) -> None:
    slot, services = player.session.slot, player.services
    slot.profile.donate = message.donate
    if message.donate and services.donations is not None:  # capped per game, address and folder
        slot.donor = Donor(services.donations, services.feedback.contributor_of(contributor_address(player)))
    _calibration_status(player)


_unhandled = sorted(cls.type for cls in message_classes() if cls not in _ROUTES)
if _unhandled:
    raise RuntimeError(f"client messages without a handler: {', '.join(_unhandled)}")
