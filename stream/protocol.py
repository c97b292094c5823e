"""The WebSocket wire protocol: one dataclass per message, strict parsing of client text messages.

Client messages come from strangers, so parsing is strict: size is checked before JSON decoding,
every type has an exact field set (unknown or missing fields are errors) and every failure is a
`ProtocolError` whose `code` is sent back verbatim in an `error` message. Server messages are plain
dataclasses with `to_dict()`; `encode()` turns any of them into the compact JSON text sent on the wire.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from maze import Direction

SCHEMES = ("counting", "pointing")

# Error codes of `error` messages (plus model.frames.FRAME_ERROR_CODES); listed in docs/protocol.md.
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
BAD_FIELD = "bad_field"
MESSAGE_TOO_LARGE = "message_too_large"
NOT_FOUND = "not_found"
FORBIDDEN = "forbidden"
READ_ONLY = "read_only"
NOT_PLAYING = "not_playing"
NOT_WON = "not_won"
RATE_LIMITED = "rate_limited"
TOO_MANY_SPECTATORS = "too_many_spectators"
TOO_MANY_CONNECTIONS = "too_many_connections"
PROCESSING_FAILED = "processing_failed"
MODEL_UNAVAILABLE = "model_unavailable"
IDLE_TIMEOUT = "idle_timeout"
SHUTTING_DOWN = "shutting_down"
NOTHING_TO_UNDO = "nothing_to_undo"
STORE_UNAVAILABLE = "store_unavailable"  # the session store is unreachable: changes are paused

# Close codes.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutdown
CLOSE_POLICY = 1008  # not allowed here: unknown session, wrong token, foreign origin, caps
CLOSE_TOO_BIG = 1009  # a frame above the transport limit (uvicorn's ws_max_size)
CLOSE_REPLACED = 4000  # a newer player connection took over
CLOSE_TOO_SLOW = 4001  # a send blocked longer than GM_SEND_TIMEOUT_S
CLOSE_IDLE = 4002  # a player socket sent nothing for GM_IDLE_TIMEOUT_S

_MAX_DEPTH = 4  # legitimate messages are flat objects; deeper nesting is refused before json.loads


class ProtocolError(ValueError):
    """A client message that cannot be accepted; `code` goes to the client as is."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- client -> server -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MoveMessage:
    direction: Direction
    type: ClassVar[str] = "move"


@dataclass(frozen=True, slots=True)
class RestartMessage:
    type: ClassVar[str] = "restart"


@dataclass(frozen=True, slots=True)
class NextLevelMessage:
    type: ClassVar[str] = "next_level"


@dataclass(frozen=True, slots=True)
class SchemeMessage:
    scheme: str
    type: ClassVar[str] = "scheme"


@dataclass(frozen=True, slots=True)
class PingMessage:
    t: float | int
    type: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True)
class ShareHandMessage:
    """The player's opt-in (or out) to show spectators the hand skeleton: landmarks only, never video."""

    enabled: bool
    type: ClassVar[str] = "share_hand"


# --- feedback (stream.recognition.feedback) ---
@dataclass(frozen=True, slots=True)
class UndoMessage:
    """"That was wrong": undo the last gesture move; `label` is the gesture meant, if the player says."""

    label: str | None
    type: ClassVar[str] = "undo"


@dataclass(frozen=True, slots=True)
class ConsentMessage:
    """The player's opt-in (or opt-out) to storing the landmarks of undone moves for retraining."""

    feedback: bool
    type: ClassVar[str] = "consent"



# --- per-player calibration (model.personal) ---
@dataclass(frozen=True, slots=True)
class CalibrateMessage:
    """Record the frames from now on as samples of `gesture` (a model class or "relaxed");
    `null` stops recording, after which the player's samples adapt recognition."""

    gesture: str | None
    type: ClassVar[str] = "calibrate"


@dataclass(frozen=True, slots=True)
class CalibrationResetMessage:
    type: ClassVar[str] = "calibration_reset"


@dataclass(frozen=True, slots=True)
class DonateMessage:
    """Opt in (true) or out (false) of keeping the calibration landmarks after the session ends."""

    donate: bool
    type: ClassVar[str] = "donate"


ClientMessage = (
    MoveMessage | RestartMessage | NextLevelMessage | SchemeMessage | PingMessage | ShareHandMessage
    | UndoMessage | ConsentMessage | CalibrateMessage | CalibrationResetMessage | DonateMessage
)


def _direction(value: Any) -> Direction:
    try:
        return Direction(value)
    except ValueError:
        raise ProtocolError(BAD_FIELD, "direction must be one of up, down, left, right") from None


def _scheme(value: Any) -> str:
    if value not in SCHEMES:
        raise ProtocolError(BAD_FIELD, f"scheme must be one of {', '.join(SCHEMES)}")
    return value


def _boolean(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ProtocolError(BAD_FIELD, f"{name} must be true or false")
        return value

    return check


_MAX_SAFE_INT = 2**53  # beyond this a JSON number is not exact in JavaScript (and float() may overflow)


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(BAD_FIELD, "t must be a number")
    if isinstance(value, int) and abs(value) > _MAX_SAFE_INT:
        raise ProtocolError(BAD_FIELD, "t is out of range")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(BAD_FIELD, "t must be a finite number")
    return value


_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _gesture_name(name: str) -> Callable[[Any], str | None]:
    """Null or a gesture name (a-z, 0-9, _; at most 32): undo labels and calibration targets."""

    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= 32 or not set(value) <= _LABEL_CHARS:
            raise ProtocolError(BAD_FIELD, f"{name} must be null or a gesture name (a-z, 0-9, _; at most 32)")
        return value

    return check


# type -> (message class, {field: validator})
_SCHEMA: dict[str, tuple[type, dict[str, Any]]] = {
    "move": (MoveMessage, {"direction": _direction}),
    "restart": (RestartMessage, {}),
    "next_level": (NextLevelMessage, {}),
    "scheme": (SchemeMessage, {"scheme": _scheme}),
    "ping": (PingMessage, {"t": _number}),
    "share_hand": (ShareHandMessage, {"enabled": _boolean("enabled")}),
    "undo": (UndoMessage, {"label": _gesture_name("label")}),
    "consent": (ConsentMessage, {"feedback": _boolean("feedback")}),
    "calibrate": (CalibrateMessage, {"gesture": _gesture_name("gesture")}),
    "calibration_reset": (CalibrationResetMessage, {}),
    "donate": (DonateMessage, {"donate": _boolean("donate")}),
}
CLIENT_TYPES = tuple(_SCHEMA)
_OPTIONAL = frozenset({("undo", "label")})  # may be left out (means null)


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings: refuses `[[[[...` bombs without recursing."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_client_message(text: str, max_bytes: int) -> ClientMessage:
    """Validate and decode one text message from a player; raises ProtocolError."""
    # len(text) <= bytes <= 4 * len(text): cheap bounds first, exact UTF-8 length only when unsure.
    if len(text) > max_bytes or (
        4 * len(text) > max_bytes and len(text.encode("utf-8", "replace")) > max_bytes
    ):
        raise ProtocolError(MESSAGE_TOO_LARGE, f"text messages are limited to {max_bytes} bytes")
    if _nesting_depth(text) > _MAX_DEPTH:
        raise ProtocolError(BAD_JSON, "JSON nested too deeply")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(BAD_JSON, "message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(BAD_MESSAGE, 'a message must be a JSON object with a "type"')
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(BAD_MESSAGE, 'a message must have a string "type"')
    if kind not in _SCHEMA:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type (expected one of {', '.join(CLIENT_TYPES)})")
    cls, fields = _SCHEMA[kind]
    extra = sorted(set(data) - set(fields) - {"type"})
    if extra:
        raise ProtocolError(BAD_FIELD, f"unexpected field(s) for {kind}: {', '.join(extra)[:100]}")
    values = {}
    for name, validate in fields.items():
        if name not in data and (kind, name) in _OPTIONAL:
            values[name] = None
            continue
        if name not in data:
            raise ProtocolError(BAD_FIELD, f"{kind} needs a {name!r} field")
        values[name] = validate(data[name])
    return cls(**values)


# --- server -> client -------------------------------------------------------------------------
def encode(message: Any) -> str:
    """Compact JSON text of a server message (dataclass with to_dict, or a ready dict)."""
    payload = message if isinstance(message, dict) else message.to_dict()
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int
    max_fps: float

    def to_dict(self) -> dict[str, Any]:
        return {"max_frame_bytes": self.max_frame_bytes, "max_fps": self.max_fps}


@dataclass(frozen=True, slots=True)
class Welcome:
    role: str  # "player" | "spectator"
    session_id: str
    scheme: str
    limits: Limits
    server_time: float
    resumed: bool = False  # the player continues a game it (or the server, before a restart) had

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "welcome",
            "role": self.role,
            "session_id": self.session_id,
            "scheme": self.scheme,
            "limits": self.limits.to_dict(),
            "server_time": self.server_time,
            "resumed": self.resumed,
        }


@dataclass(frozen=True, slots=True)
class LastMove:
    direction: str
    ok: bool
    source: str  # "keyboard" | "gesture"

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "ok": self.ok, "source": self.source}


@dataclass(frozen=True, slots=True)
class Won:
    level: int
    moves: int
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": "won", "level": self.level, "moves": self.moves, "elapsed_s": self.elapsed_s}


@dataclass(frozen=True, slots=True)
class FrameReply:
    seq: int
    hand: bool
    gesture: str | None
    confidence: float
    command: str | None
    processing_ms: float
    dropped: int
    landmarks: list[list[float]] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "frame",
            "seq": self.seq,
            "hand": self.hand,
            "gesture": self.gesture,
            "confidence": self.confidence,
            "command": self.command,
            "processing_ms": self.processing_ms,
            "dropped": self.dropped,
            "landmarks": self.landmarks,
        }


@dataclass(frozen=True, slots=True)
class CalibrationStatus:
    """Reply to every calibration message: what is being recorded and the samples kept so far."""

    recording: str | None
    samples: dict[str, int]
    donate: bool

    def to_dict(self) -> dict[str, Any]:
        return {"type": "calibration", "recording": self.recording, "samples": self.samples,
                "donate": self.donate}


@dataclass(frozen=True, slots=True)
class GestureNotice:
    gesture: str | None
    confidence: float
    hand: bool
    # The player shares the skeleton: `landmarks` is sent (a list, or null without a hand).
    shared: bool = False
    landmarks: Any = None

    def to_dict(self) -> dict[str, Any]:
        body = {"type": "gesture", "gesture": self.gesture, "confidence": self.confidence, "hand": self.hand}
        if self.shared:
            body["landmarks"] = self.landmarks
        return body


@dataclass(frozen=True, slots=True)
class Undone:
    """To the player: the move was taken back; `stored` says whether the correction was recorded."""

    direction: str
    gesture: str | None
    label: str | None
    stored: bool

    def to_dict(self) -> dict[str, Any]:
        return {"type": "undone", "direction": self.direction, "gesture": self.gesture,
                "label": self.label, "stored": self.stored}


@dataclass(frozen=True, slots=True)
class Pong:
    t: float | int

    def to_dict(self) -> dict[str, Any]:
        return {"type": "pong", "t": self.t}


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": self.message}


@dataclass(slots=True)
class StateSnapshot:
    """One state of a session, shared by every connection; encoded at most twice (with/without maze).

    `maze_changed` marks the first state of a new maze: it always carries the maze. Other states
    carry it only for a connection that has not seen this `maze_version` yet (first state, resync).
    """

    version: int
    maze_version: int
    maze_changed: bool
    body: dict[str, Any]  # every field except "maze"
    maze: dict[str, Any]
    _texts: dict[bool, str] = field(default_factory=dict)

    def text(self, with_maze: bool) -> str:
        with_maze = with_maze or self.maze_changed
        cached = self._texts.get(with_maze)
        if cached is None:
            payload = dict(self.body, maze=self.maze) if with_maze else self.body
            cached = self._texts[with_maze] = encode(payload)
        return cached
