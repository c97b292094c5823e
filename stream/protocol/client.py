"""Client -> server text messages: each one registered ONCE, with its type and the validator of
every field (as Colyseus' `onMessage(type, schema, handler)`; the handler is registered next to the
game code, stream.web.player_messages).

Client messages come from strangers, so parsing is strict: size is checked before JSON decoding,
nesting before recursion, every type has an exact field set (unknown or missing fields are errors)
and every failure is a `ProtocolError` whose `code` is sent back verbatim in an `error` message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar, TypeVar

import numpy as np

from maze import Direction
from model.schemes import SCHEMES
from stream.protocol.codes import BAD_FIELD, BAD_JSON, BAD_MESSAGE, MESSAGE_TOO_LARGE, UNKNOWN_TYPE

Validator = Callable[[Any], Any]
_MAX_DEPTH = 4  # legitimate messages are flat objects; deeper nesting is refused before json.loads
_MAX_SAFE_INT = 2**53  # beyond this a JSON number is not exact in JavaScript (and float() may overflow)
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class ProtocolError(ValueError):
    """A client message that cannot be accepted; `code` goes to the client as is."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ClientMessage:
    """Base of every client message; `type` is set by `client_message`."""

    __slots__ = ()
    type: ClassVar[str]


@dataclass(frozen=True, slots=True)
class MessageSpec:
    type: str
    cls: type[ClientMessage]
    fields: dict[str, Validator]
    optional: frozenset[str]  # fields that may be left out (they mean null)


_SPECS: dict[str, MessageSpec] = {}
M = TypeVar("M", bound=type[ClientMessage])


def client_message(type_: str, *, optional: tuple[str, ...] = (), **fields: Validator) -> Callable[[M], M]:
    """Register a message class under `type_` with one validator per field (the whole schema)."""

    def register(cls: M) -> M:
        if type_ in _SPECS:
            raise ValueError(f"client message type {type_!r} is registered twice")
        cls.type = type_
        _SPECS[type_] = MessageSpec(type_, cls, dict(fields), frozenset(optional))
        return cls

    return register


def client_types() -> tuple[str, ...]:
    return tuple(_SPECS)


def message_classes() -> tuple[type[ClientMessage], ...]:
    return tuple(spec.cls for spec in _SPECS.values())


# --- field validators -------------------------------------------------------------------------
def direction(value: Any) -> Direction:
    try:
        return Direction(value)
    except ValueError:
        raise ProtocolError(BAD_FIELD, "direction must be one of up, down, left, right") from None


def scheme(value: Any) -> str:
    if value not in SCHEMES:
        raise ProtocolError(BAD_FIELD, f"scheme must be one of {', '.join(SCHEMES)}")
    return value


def boolean(name: str) -> Validator:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ProtocolError(BAD_FIELD, f"{name} must be true or false")
        return value

    return check


def number(name: str) -> Validator:
    def check(value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(BAD_FIELD, f"{name} must be a number")
        if isinstance(value, int) and abs(value) > _MAX_SAFE_INT:
            raise ProtocolError(BAD_FIELD, f"{name} is out of range")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(BAD_FIELD, f"{name} must be a finite number")
        return value

    return check


def gesture_name(name: str) -> Validator:
    """Null or a gesture name (a-z, 0-9, _; at most 32): undo labels and calibration targets."""

    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= 32 or not set(value) <= _LABEL_CHARS:
            raise ProtocolError(BAD_FIELD, f"{name} must be null or a gesture name (a-z, 0-9, _; at most 32)")
        return value

    return check


LANDMARK_POINTS = 21  # MediaPipe's hand model
_XY_RANGE = (-0.5, 1.5)  # a hand partly outside the frame has points a little beyond 0..1
_Z_RANGE = (-1.0, 1.0)  # relative depth, on the scale of x
_SIDE_RANGE = (16, 8192)  # frame sides in pixels (the aspect ratio shapes the features)


@dataclass(frozen=True, slots=True)
class SeenHand:
    """A hand the client found in its own camera frame (edge mode)."""

    points: tuple[tuple[float, float, float], ...]  # 21 (x, y, z); x, y in 0..1 of the unmirrored frame
    handedness: str  # the person's real hand: "Left" or "Right"
    score: float  # the detector's confidence, 0..1


def _bounded(value: Any, low: float, high: float, what: str) -> float:
    # An integer too long for a float (JSON allows 4,000 digits) is refused like infinity.
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or (isinstance(value, int) and abs(value) > _MAX_SAFE_INT) or not math.isfinite(value)):
        raise ProtocolError(BAD_FIELD, f"{what} must be a finite number")
    if not low <= value <= high:
        raise ProtocolError(BAD_FIELD, f"{what} must be within {low:g}..{high:g}")
    return float(value)


def frame_side(name: str) -> Validator:
    def check(value: Any) -> int:
        low, high = _SIDE_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ProtocolError(BAD_FIELD, f"{name} must be a whole number of pixels, {low}..{high}")
        return value

    return check


_POINT_LOW = np.array([_XY_RANGE[0], _XY_RANGE[0], _Z_RANGE[0]])
_POINT_HIGH = np.array([_XY_RANGE[1], _XY_RANGE[1], _Z_RANGE[1]])
_AXES = ("x", "y", "z")


_NUMBER_TYPES = frozenset((float, int))  # exactly: not bool (an int subclass), str, null, ...


def _checked_points(points: list[Any]) -> tuple[tuple[float, float, float], ...]:
    """21 finite [x, y, z] within their ranges. Checked as one array (a player sends 15 of these a
    second); the per-value checks run only to word the error of a message already known to be bad."""
    flat = list(chain.from_iterable(points))
    try:
        if _NUMBER_TYPES.issuperset(map(type, flat)):
            array = np.array(flat, dtype=np.float64).reshape(LANDMARK_POINTS, 3)
            if np.isfinite(array).all() and not ((array < _POINT_LOW) | (array > _POINT_HIGH)).any():
                return tuple(map(tuple, array.tolist()))
    except OverflowError:  # an integer beyond any float: refused below, with the others
        pass
    for i, v in enumerate(flat):
        low, high = _POINT_LOW[i % 3], _POINT_HIGH[i % 3]
        _bounded(v, low, high, f"hand.points {_AXES[i % 3]}")
    raise ProtocolError(BAD_FIELD, "hand.points must be finite numbers")  # not reached: one was refused


def seen_hand(value: Any) -> SeenHand | None:
    """Null (no hand in the frame) or {"points": 21 x [x, y, z], "handedness", "score"}, exactly."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"points", "handedness", "score"}:
        raise ProtocolError(BAD_FIELD, 'hand must be null or exactly {"points", "handedness", "score"}')
    points = value["points"]
    if not isinstance(points, list) or len(points) != LANDMARK_POINTS:
        raise ProtocolError(BAD_FIELD, f"hand.points must be a list of {LANDMARK_POINTS} [x, y, z] points")
    if set(map(type, points)) != {list} or set(map(len, points)) != {3}:
        raise ProtocolError(BAD_FIELD, "each of hand.points must be [x, y, z]")
    checked = _checked_points(points)
    if value["handedness"] not in ("Left", "Right"):
        raise ProtocolError(BAD_FIELD, 'hand.handedness must be "Left" or "Right"')
    return SeenHand(checked, value["handedness"], _bounded(value["score"], 0.0, 1.0, "hand.score"))


# --- the messages -----------------------------------------------------------------------------
@client_message("move", direction=direction)
@dataclass(frozen=True, slots=True)
class MoveMessage(ClientMessage):
    direction: Direction


@client_message("restart")
@dataclass(frozen=True, slots=True)
class RestartMessage(ClientMessage):
    pass


@client_message("next_level")
@dataclass(frozen=True, slots=True)
class NextLevelMessage(ClientMessage):
    pass


@client_message("scheme", scheme=scheme)
@dataclass(frozen=True, slots=True)
class SchemeMessage(ClientMessage):
    scheme: str


@client_message("ping", t=number("t"))
@dataclass(frozen=True, slots=True)
class PingMessage(ClientMessage):
    t: float | int


@client_message("share_hand", enabled=boolean("enabled"))
@dataclass(frozen=True, slots=True)
class ShareHandMessage(ClientMessage):
    """The player's opt-in (or out) to show spectators the hand skeleton: landmarks only, never video."""

    enabled: bool


@client_message("undo", optional=("label",), label=gesture_name("label"))
@dataclass(frozen=True, slots=True)
class UndoMessage(ClientMessage):
    """"That was wrong": undo the last gesture move; `label` is the gesture meant, if the player says."""

    label: str | None


@client_message("consent", feedback=boolean("feedback"))
@dataclass(frozen=True, slots=True)
class ConsentMessage(ClientMessage):
    """The player's opt-in (or opt-out) to storing the landmarks of undone moves for retraining."""

    feedback: bool


@client_message("calibrate", gesture=gesture_name("gesture"))
@dataclass(frozen=True, slots=True)
class CalibrateMessage(ClientMessage):
    """Record the frames from now on as samples of `gesture` (a model class or "relaxed");
    `null` stops recording, after which the player's samples adapt recognition."""

    gesture: str | None


@client_message("calibration_reset")
@dataclass(frozen=True, slots=True)
class CalibrationResetMessage(ClientMessage):
    pass


@client_message("donate", donate=boolean("donate"))
@dataclass(frozen=True, slots=True)
class DonateMessage(ClientMessage):
    """Opt in (true) or out (false) of keeping the calibration landmarks after the session ends."""

    donate: bool


@client_message("landmarks", width=frame_side("width"), height=frame_side("height"), hand=seen_hand)
@dataclass(frozen=True, slots=True)
class LandmarksMessage(ClientMessage):
    """Edge mode: the hand the page found in one camera frame (`hand` null: none), sent instead of
    the JPEG. Paced like frames (GM_MAX_FPS); recognised by the server's own classifier."""

    width: int
    height: int
    hand: SeenHand | None


def encode_landmarks(width: int, height: int, hand: SeenHand | None) -> str:
    """A `landmarks` message as a client sends it (the load-test tool's edge players)."""
    body = None
    if hand is not None:
        points = [[round(v, 5) for v in point] for point in hand.points]
        body = {"points": points, "handedness": hand.handedness, "score": round(hand.score, 5)}
    message = {"type": "landmarks", "width": width, "height": height, "hand": body}
    return json.dumps(message, separators=(",", ":"))


# --- parsing ----------------------------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# Characters of numbers and separators: none is a bracket, a quote or a character JSON escapes (\", \n,
# \u...), so deleting them first keeps every string's extent and every bracket outside strings.
_NUMBERS = str.maketrans("", "", "0123456789.,:-+eE \t\r\n")
_INNERMOST_PAIR = re.compile(r"[\[{][\]}]")


def _within_depth(text: str, limit: int) -> bool:
    """True when `text` certainly nests brackets (outside strings) at most `limit` deep: the innermost
    pairs are removed `limit` times, all at C speed (a landmarks message is mostly numbers, and arrives
    15 times a second per player). False means deeper, or brackets that do not pair up: ask
    `_nesting_depth`."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text.translate(_NUMBERS)))
    for _ in range(limit):
        brackets, removed = _INNERMOST_PAIR.subn("", brackets)
        if not brackets:
            return True
        if not removed:
            return False
    return False


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings: refuses `[[[[...` bombs without recursing. Strings and
    everything but brackets are cut out by regular expressions first (C speed: a landmarks message
    arrives 15 times a second per player); an unterminated string's brackets count (it is refused
    either way)."""
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_client_message(text: str, max_bytes: int) -> ClientMessage:
    """Validate and decode one text message from a player; raises ProtocolError."""
    # len(text) <= bytes <= 4 * len(text): cheap bounds first, exact UTF-8 length only when unsure.
    if len(text) > max_bytes or (
        4 * len(text) > max_bytes and len(text.encode("utf-8", "replace")) > max_bytes
    ):
        raise ProtocolError(MESSAGE_TOO_LARGE, f"text messages are limited to {max_bytes} bytes")
    if not _within_depth(text, _MAX_DEPTH) and _nesting_depth(text) > _MAX_DEPTH:
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
    spec = _SPECS.get(kind)
    if spec is None:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type (expected one of {', '.join(_SPECS)})")
    extra = sorted(set(data) - set(spec.fields) - {"type"})
    if extra:
        raise ProtocolError(BAD_FIELD, f"unexpected field(s) for {kind}: {', '.join(extra)[:100]}")
    values = {}
    for name, validate in spec.fields.items():
        if name not in data:
            if name not in spec.optional:
                raise ProtocolError(BAD_FIELD, f"{kind} needs a {name!r} field")
            values[name] = None
            continue
        values[name] = validate(data[name])
    return spec.cls(**values)
