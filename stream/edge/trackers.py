"""How many hand trackers (MediaPipe graphs, ~60 MiB each) the server holds at once.

A player's tracker is made on its first frame and is the largest thing a client can make the
server hold. `TrackerBudget` caps them server-wide and per client address; a player beyond the cap
gets `too_many_streams` (keyboard play keeps working), and a tracker whose player has sent no frame
for GM_TRACKER_IDLE_S is released (stream.sessions.registry), so an idle game costs no graph.
A limit like the others at the edge (stream.edge.limits), of memory rather than rate.
"""

from __future__ import annotations

from collections.abc import Callable

from stream.edge.limits import ConnectionLimiter
from stream.metrics import Metrics


class TrackerBudget:
    def __init__(self, max_total: int, max_per_address: int, metrics: Metrics | None = None) -> None:
        self.max_total = max_total
        self._per_address = ConnectionLimiter(max_per_address)
        self._metrics = metrics
        self.in_use = 0

    def acquire(self, address: str) -> Callable[[], None] | None:
        """A release function when a tracker may be made for a player at `address`, else None."""
        if 0 < self.max_total <= self.in_use or not self._per_address.acquire(address):
            return None
        self.in_use += 1
        self._observe()
        released = False

        def release() -> None:
            nonlocal released
            if not released:  # idempotent: the slot may be released by the reaper and the leave
                released = True
                self.in_use -= 1
                self._per_address.release(address)
                self._observe()

        return release

    def _observe(self) -> None:
        if self._metrics is not None:
            self._metrics.trackers.set(self.in_use)
