"""Session-slot policy: one client address must not be able to hoard the server's session slots.

- `SlotPolicy(max_per_owner, unjoined_ttl_s)`: `max_per_owner` live sessions per client address
  (0 = no cap; GM_MAX_SESSIONS_PER_IP), and a session no player ever joined expires after
  `unjoined_ttl_s` (0 = never; GM_UNJOINED_SESSION_TTL_S) instead of the longer GM_SESSION_GRACE_S.
  `.admits(held) -> bool`; `.unjoined_expired(joined, age_s) -> bool`.
- `OwnerLimitError`: raised by `SessionRegistry.create` when the address holds its cap (HTTP 429).

Together with the per-address creation rate this bounds what a few addresses can hold: each holds at
most `max_per_owner` slots, and an abandoned creation frees its slot within `unjoined_ttl_s`.
"""

from __future__ import annotations

from dataclasses import dataclass


class OwnerLimitError(RuntimeError):
    """This client address already holds its cap of live sessions (HTTP 429)."""


@dataclass(frozen=True, slots=True)
class SlotPolicy:
    max_per_owner: int = 0
    unjoined_ttl_s: float = 0.0

    def admits(self, held: int) -> bool:
        return self.max_per_owner <= 0 or held < self.max_per_owner

    def unjoined_expired(self, joined: bool, age_s: float) -> bool:
        return not joined and self.unjoined_ttl_s > 0 and age_s > self.unjoined_ttl_s
