"""Game-feel rules that sit between recognition and the maze (see docs/decisions/0013-game-feel.md).

- Game names: a player-chosen name (cleaned) or a friendly generated one ("Brave Otter").
- Shared control: a keyboard/touch move pauses gesture moves for `manual_lockout_s`, so the two
  never fight; the last manual input wins.
- Level change: after a win, gestures are latched until the camera shows a neutral hand (no hand,
  or a gesture that steers nowhere), so a gesture still held at the win never moves the ball in the
  new level. A neutral hand after `win_card_min_s` also starts the next level. "Neutral" must last
  `neutral_hold_s` (several frames), so a single missed detection does not count.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_NAME_CHARS = 32

_ADJECTIVES = (
    "Brave", "Calm", "Clever", "Swift", "Bold", "Bright", "Curious", "Daring", "Eager", "Gentle",
    "Happy", "Jolly", "Keen", "Lucky", "Merry", "Nimble", "Plucky", "Quick", "Quiet", "Sunny",
    "Witty", "Zesty", "Cosmic", "Mighty",
)  # fmt: skip
_ANIMALS = (
    "Otter", "Fox", "Panda", "Heron", "Lynx", "Badger", "Koala", "Falcon", "Gecko", "Puffin",
    "Marten", "Walrus", "Bison", "Crane", "Dolphin", "Hedgehog", "Ibis", "Jaguar", "Lemur", "Moose",
    "Owl", "Raven", "Seal", "Tapir",
)  # fmt: skip


def friendly_name() -> str:
    """A readable two-word game name; not unique (the id is), just easy to tell apart in a lobby."""
    return f"{secrets.choice(_ADJECTIVES)} {secrets.choice(_ANIMALS)}"


def clean_name(value: Any) -> str | None:
    """A player-chosen game name, trimmed to one line of printable text, or None when empty.

    Raises ValueError for a non-string or a name longer than MAX_NAME_CHARS after trimming."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("name must be a string")
    text = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C")  # no control characters
    text = " ".join(text.split())
    if len(text) > MAX_NAME_CHARS:
        raise ValueError(f"name is limited to {MAX_NAME_CHARS} characters")
    return text or None


@dataclass(frozen=True, slots=True)
class FeelConfig:
    manual_lockout_s: float = 1.2
    win_card_min_s: float = 1.0
    neutral_hold_s: float = 0.3  # one frame without a hand (blur, a glitch) is not a lowered hand

    @classmethod
    def from_settings(cls, settings: Any) -> FeelConfig:
        return cls(
            manual_lockout_s=settings.manual_lockout_ms / 1000.0,
            win_card_min_s=settings.win_card_min_s,
            neutral_hold_s=settings.neutral_hold_ms / 1000.0,
        )
