"""The session store contract: where game state lives beyond one process's memory.

A `Store` keeps one `SessionRecord` per live session (the game, its version, token hashes, the
latest state and lobby summary) and, when `shared` (several instances on one backend), carries
session events between instances (`publish` / the subscription `Bus`) and the player-ownership lease
that makes exactly one instance the writer of a session. Writes are fenced by that lease: an
instance that lost it gets `OwnershipLost` instead of overwriting the new owner's state.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any


class StoreUnavailable(RuntimeError):
    """The backend cannot be reached right now (the caller retries or refuses the change)."""


class OwnershipLost(RuntimeError):
    """Another instance holds this session's lease: this instance must stop writing it."""


def token_hash(token: str | None) -> str:
    """What the store keeps instead of a token: enough to check one, useless to play with."""
    return hashlib.sha256((token or "").encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class SessionRecord:
    session_id: str
    version: int
    options: dict[str, Any]  # SessionOptions fields
    player_token_hash: str
    watch_token_hash: str | None
    created_at: float  # wall clock
    game: dict[str, Any]  # maze.Game.to_dict()
    state: dict[str, Any]  # body of the latest state message (no maze)
    summary: dict[str, Any]  # what the lobby lists
    players_joined: int = 0  # player connections so far: a returning player is told "resumed"

    @property
    def public(self) -> bool:
        return not self.options.get("private", False)

    def to_json(self) -> str:
        # Its fields are already JSON values: `asdict` would deep-copy the whole game in Python first
        # (most of a save's time, once per move).
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionRecord:
        return cls(**json.loads(text))


# Subscription callbacks: (session_id, raw event) for session channels; () after (re)subscribing.
EventHandler = Callable[[str, bytes], None]
ResubscribeHandler = Callable[[], None]


class Store(ABC):
    """One backend. `shared` stores also implement the event bus and the lease for real."""

    shared: bool = False
    backend: str = "?"

    def __init__(self) -> None:
        self.up = True  # last known reachability (health checks and failed calls update it)
        self.on_up_change: Callable[[bool], None] | None = None

    def set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            if self.on_up_change is not None:
                self.on_up_change(up)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (may raise StoreUnavailable only for a misconfiguration, never for a blip)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    async def save(self, record: SessionRecord, owner: str, ttl_s: float, event: bytes | None = None) -> None:
        """Write `record` if `owner` holds (or may take) its lease, refresh TTLs, then publish `event`.

        Raises OwnershipLost when another owner holds the lease, StoreUnavailable when unreachable.
        """

    @abstractmethod
    async def load(self, session_id: str) -> SessionRecord | None: ...

    @abstractmethod
    async def delete(self, session_id: str, owner: str) -> None:
        """Remove the session if `owner` still holds it (a reaped session)."""

    @abstractmethod
    async def list_public(self, limit: int) -> list[dict[str, Any]]:
        """Lobby summaries of live public sessions, oldest first."""

    async def touch(self, session_ids: list[str], owner: str, ttl_s: float) -> tuple[list[str], list[str]]:
        """Keep these sessions (held in memory by `owner`) alive. Returns (lost, missing): the ids
        another instance took over, and those the backend no longer has (e.g. Redis restarted empty),
        which the caller saves again from memory."""
        return [], []

    async def claim(self, session_id: str, owner: str, lease_s: float) -> str | None:
        """Take the session's lease (a takeover always wins); returns the previous holder."""
        return owner

    async def holder(self, session_id: str) -> str | None:
        """The instance holding the session's lease now (None: nobody, or an embedded store)."""
        return None

    async def publish(self, session_id: str, event: bytes) -> None:  # noqa: B027 - shared stores only
        pass

    async def ping(self) -> None:  # noqa: B027 - embedded stores are always reachable
        pass

    def bus(
        self, instance_id: str, on_event: EventHandler, on_resubscribed: ResubscribeHandler
    ) -> Bus | None:
        """The subscription side of a shared store (None for an embedded one)."""
        return None


class Bus(ABC):
    """Session-channel subscriptions of one instance, kept alive across backend outages."""

    healthy: bool = False

    @abstractmethod
    def subscribe(self, session_id: str) -> None: ...

    @abstractmethod
    def unsubscribe(self, session_id: str) -> None: ...

    @abstractmethod
    async def run(self) -> None:
        """Read until cancelled, resubscribing with backoff after any failure or silence."""
