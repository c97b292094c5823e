"""How a session's changes reach its audience: `Publisher` is the one seam between the game and
delivery. `DirectPublisher` delivers at once; a durable one (stream.durability.journal) stores each
state first and delivers in the same order afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from stream.protocol.server import StateSnapshot
from stream.sessions.audience import Audience


class Publisher(Protocol):
    @property
    def paused(self) -> bool:
        """True while changes cannot be made durable: moves are refused rather than lost."""
        ...

    def state(self, snapshot: StateSnapshot) -> None: ...

    def notice(self, payload: dict[str, Any], text: str, spectators_only: bool) -> None:
        """A message that goes out in order with the states (e.g. `won`)."""
        ...

    def then(self, action: Callable[[], None]) -> None:
        """Run `action` once everything published so far has been delivered (e.g. a reply that must
        not overtake the state it describes)."""
        ...


class DirectPublisher:
    """No store: every change is delivered as it is made."""

    paused = False

    def __init__(self, audience: Audience) -> None:
        self.audience = audience

    def state(self, snapshot: StateSnapshot) -> None:
        self.audience.deliver_state(snapshot)

    def notice(self, payload: dict[str, Any], text: str, spectators_only: bool) -> None:
        self.audience.deliver_encoded(payload["type"], text, spectators_only)

    def then(self, action: Callable[[], None]) -> None:
        action()
