"""Server -> client messages, one dataclass each (the `state` body too), and their JSON encoding.

Every message class has a `type`; `SERVER_TYPES` lists them for the docs check. `encode()` turns a
message (or a ready dict) into the compact JSON text sent on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


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
    # What the session keeps of the player's calibration ({"samples", "donate"}; no samples after a
    # restart: they are never stored), so a page that reconnects tells the truth. None: spectators.
    calibration: dict[str, Any] | None = None
    type: ClassVar[str] = "welcome"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "role": self.role,
            "session_id": self.session_id,
            "scheme": self.scheme,
            "limits": self.limits.to_dict(),
            "server_time": self.server_time,
            "resumed": self.resumed,
            **({"calibration": self.calibration} if self.calibration is not None else {}),
        }


@dataclass(frozen=True, slots=True)
class LastMove:
    direction: str
    ok: bool
    source: str  # "keyboard" | "gesture" | "undo"

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "ok": self.ok, "source": self.source}


@dataclass(frozen=True, slots=True)
class StateBody:
    """Everything a `state` message says except the maze (which travels only when needed,
    see StateSnapshot). Stored as is with every session record."""

    session_id: str
    name: str
    level: int
    player: dict[str, int]
    goal: dict[str, int] | None
    start: dict[str, int]
    moves: int
    status: str
    elapsed_s: float
    scheme: str
    spectators: int
    player_connected: bool
    share_hand: bool
    version: int
    last_move: LastMove | None = None
    calibrating: bool = False  # the player calibrates: the game is frozen (sent only while true)
    type: ClassVar[str] = "state"

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "session_id": self.session_id,
            "name": self.name,
            "level": self.level,
            "player": self.player,
            "goal": self.goal,
            "start": self.start,
            "moves": self.moves,
            "status": self.status,
            "elapsed_s": self.elapsed_s,
            "scheme": self.scheme,
            "spectators": self.spectators,
            "player_connected": self.player_connected,
            "share_hand": self.share_hand,
            "version": self.version,
        }
        if self.last_move is not None:
            body["last_move"] = self.last_move.to_dict()
        if self.calibrating:
            body["calibrating"] = True
        return body


@dataclass(slots=True)
class StateSnapshot:
    """One state of a session, shared by every connection; encoded at most twice (with/without maze).

    `maze_changed` marks the first state of a new maze: it always carries the maze. Other states
    carry it only for a connection that has not seen this `maze_version` yet (first state, resync).
    """

    version: int
    maze_version: int
    maze_changed: bool
    body: dict[str, Any]  # StateBody.to_dict(): every field except "maze"
    maze: dict[str, Any]
    _texts: dict[bool, str] = field(default_factory=dict)

    def text(self, with_maze: bool) -> str:
        with_maze = with_maze or self.maze_changed
        cached = self._texts.get(with_maze)
        if cached is None:
            payload = dict(self.body, maze=self.maze) if with_maze else self.body
            cached = self._texts[with_maze] = encode(payload)
        return cached


@dataclass(frozen=True, slots=True)
class Won:
    level: int
    moves: int
    elapsed_s: float
    type: ClassVar[str] = "won"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "level": self.level, "moves": self.moves, "elapsed_s": self.elapsed_s}


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
    type: ClassVar[str] = "frame"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
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
    step: dict[str, Any] | None = None  # the verdict of the step that just ended (stream.sessions.player)
    type: ClassVar[str] = "calibration"

    def to_dict(self) -> dict[str, Any]:
        body = {"type": self.type, "recording": self.recording, "samples": self.samples,
                "donate": self.donate}
        if self.step is not None:
            body["step"] = self.step
        return body


@dataclass(frozen=True, slots=True)
class GestureNotice:
    """To spectators (throttled): what the player's hand shows."""

    gesture: str | None
    confidence: float
    hand: bool
    # The player shares the skeleton: `landmarks` is sent (a list, or null without a hand).
    shared: bool = False
    landmarks: Any = None
    type: ClassVar[str] = "gesture"

    def to_dict(self) -> dict[str, Any]:
        body = {"type": self.type, "gesture": self.gesture, "confidence": self.confidence, "hand": self.hand}
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
    steps: int = 0  # cells the player went back (every move the held gesture made)
    moves: int = 0  # attempts taken back (wall bumps of the same hold too)
    paused: bool = False  # gesture moves wait until the hand changes (the misread one is still shown)
    type: ClassVar[str] = "undone"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "direction": self.direction, "gesture": self.gesture,
                "label": self.label, "stored": self.stored, "steps": self.steps, "moves": self.moves,
                "paused": self.paused}


@dataclass(frozen=True, slots=True)
class Pong:
    t: float | int
    type: ClassVar[str] = "pong"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "t": self.t}


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    code: str  # stream.protocol.codes
    message: str
    type: ClassVar[str] = "error"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "code": self.code, "message": self.message}


SERVER_TYPES: tuple[str, ...] = tuple(
    cls.type for cls in (Welcome, StateBody, Won, FrameReply, CalibrationStatus, GestureNotice, Undone, Pong,
                         ErrorMessage)
)
