"""The lobby: public games, listed by page from a snapshot that is rebuilt at most once per
`ttl_s`, however many clients ask (one build in flight; everyone else waits for it or is served the
previous snapshot). A page costs slicing the snapshot and encoding at most `max_page` summaries;
the build reads the store on its own thread (stream.store) and never waits on play's writes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

_ENCODED_PAGES = 64  # distinct (offset, limit) pages kept encoded per snapshot


@dataclass(frozen=True, slots=True)
class LobbyPage:
    body: bytes  # `{"sessions": [...]}`, encoded once per snapshot and page
    total: int
    next_offset: int | None


class Lobby:
    def __init__(
        self,
        build: Callable[[], Awaitable[list[dict[str, Any]]]],
        *,
        ttl_s: float,
        max_listed: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._build = build
        self.ttl_s = ttl_s
        self.max_listed = max_listed
        self._clock = clock
        self._listed: list[dict[str, Any]] = []
        self._built_at = -float("inf")
        self._stale = True  # a local game came or went: the next page waits for a new snapshot
        self._building: asyncio.Future[None] | None = None
        self._pages: dict[tuple[int, int], LobbyPage] = {}

    async def page(self, offset: int, limit: int) -> LobbyPage:
        await self._fresh()
        key = (offset, limit)
        cached = self._pages.get(key)
        if cached is None:
            listed = self._listed
            chunk = listed[offset:offset + limit]
            more = offset + limit < len(listed)
            body = json.dumps({"sessions": chunk}, separators=(",", ":")).encode()
            cached = LobbyPage(body, len(listed), offset + limit if more else None)
            if len(self._pages) < _ENCODED_PAGES:
                self._pages[key] = cached
        return cached

    def invalidate(self) -> None:
        """A game was created or ended on this instance: its creator must see it listed at once.
        (Bounded by how fast games can be made: session creation is rate limited per address.)"""
        self._stale = True

    async def _fresh(self) -> None:
        stale = self._stale
        if not stale and self._clock() - self._built_at < self.ttl_s:
            return
        if self._building is None:
            self._stale = False
            self._building = asyncio.ensure_future(self._rebuild())
        building = self._building
        if stale:
            await asyncio.shield(building)  # otherwise serve the snapshot while the next is built

    async def _rebuild(self) -> None:
        try:
            listed = await self._build()
            self._listed = listed[: self.max_listed]
            self._pages = {}
            self._built_at = self._clock()
        finally:
            self._building = None
