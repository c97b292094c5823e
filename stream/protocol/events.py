"""The channel between instances on a shared store: typed, versioned events.

A session's channel carries what its running instance stored and delivered (`Batch` of states and
notices), a takeover (`Claimed`), how many spectators another instance relays (`Watchers`) and the
session's end (`Closed`). On the wire the keys are short (one message per state change, fanned out
to every instance) and `e` is the event format's version: an event of another version is ignored
with a warning, so instances of different releases never misread each other during an upgrade.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stream.protocol.server import StateSnapshot

EVENT_VERSION = 1


class EventError(ValueError):
    """A channel message that is not an event of this version (logged and ignored)."""


@dataclass(frozen=True, slots=True)
class StateItem:
    """A stored state; the maze travels only with the first state of a new maze."""

    version: int
    maze_version: int
    maze_changed: bool
    body: dict[str, Any]
    maze: dict[str, Any] | None

    @classmethod
    def of(cls, snapshot: StateSnapshot) -> StateItem:
        maze = snapshot.maze if snapshot.maze_changed else None
        return cls(snapshot.version, snapshot.maze_version, snapshot.maze_changed, snapshot.body, maze)

    def to_wire(self) -> dict[str, Any]:
        return {"k": "s", "v": self.version, "mv": self.maze_version, "mc": self.maze_changed,
                "b": self.body, "m": self.maze}


@dataclass(frozen=True, slots=True)
class NoticeItem:
    """A message delivered in order with the states (e.g. `won`, spectators' `gesture`)."""

    payload: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"k": "m", "p": self.payload}


@dataclass(frozen=True, slots=True)
class Batch:
    items: tuple[StateItem | NoticeItem, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"k": "b", "i": [item.to_wire() for item in self.items]}


@dataclass(frozen=True, slots=True)
class Claimed:
    """`owner` took the session's lease: the instance that ran it stops (its player moved)."""

    owner: str

    def to_wire(self) -> dict[str, Any]:
        return {"k": "c", "owner": self.owner}


@dataclass(frozen=True, slots=True)
class Watchers:
    """`instance` relays the session to `count` spectators (coalesced by the sender)."""

    instance: str
    count: int

    def to_wire(self) -> dict[str, Any]:
        return {"k": "w", "instance": self.instance, "n": self.count}


@dataclass(frozen=True, slots=True)
class Closed:
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"k": "x", "reason": self.reason}


Event = Batch | Claimed | Watchers | Closed


def encode_event(event: Event) -> bytes:
    return json.dumps({"e": EVENT_VERSION, **event.to_wire()}, separators=(",", ":")).encode()


def _item(raw: Any) -> StateItem | NoticeItem:
    kind = raw.get("k") if isinstance(raw, dict) else None
    if kind == "s":
        maze = raw.get("m")
        if not isinstance(raw["b"], dict) or (maze is not None and not isinstance(maze, dict)):
            raise EventError("a state item's body and maze must be objects")
        return StateItem(int(raw["v"]), int(raw["mv"]), bool(raw.get("mc")), raw["b"], maze)
    if kind == "m" and isinstance(raw.get("p"), dict) and isinstance(raw["p"].get("type"), str):
        return NoticeItem(raw["p"])
    raise EventError(f"unknown batch item {kind!r}")


def decode_event(data: bytes | str) -> Event:
    """Parse one channel message; raises EventError for anything that is not a valid event."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise EventError("an event is a JSON object")
        if raw.get("e", EVENT_VERSION) != EVENT_VERSION:
            raise EventError(f"event version {raw.get('e')!r}, this instance reads {EVENT_VERSION}")
        kind = raw["k"]
        if kind == "b":
            if not isinstance(raw["i"], list):
                raise EventError("a batch's items must be a list")
            return Batch(tuple(_item(item) for item in raw["i"]))
        if kind == "c":
            return Claimed(str(raw["owner"]))
        if kind == "w":
            return Watchers(str(raw["instance"]), max(0, int(raw["n"])))
        if kind == "x":
            return Closed(str(raw.get("reason", "session closed"))[:120])
    except EventError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise EventError(f"malformed event: {exc!r}") from None
    raise EventError(f"unknown event kind {kind!r}")
