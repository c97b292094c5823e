"""Fair admission to an expensive endpoint shared by anonymous clients (`POST /predict`).

A request is admitted (or refused) from its head alone, before a byte of its body is read; an
admitted request then waits its turn for one of a few slots, and turns go round-robin across client
addresses, so one address keeping many requests in flight gets one turn in N like everybody else.

API (used from the event loop only; nothing here blocks):
- `FairGate(slots, per_key, capacity, wait_s)`: at most `slots` requests hold a slot (run) at once;
  at most `capacity` are admitted at once (reading their body, waiting or running) and at most
  `per_key` of them per key (0 = no per-key cap).
- `gate.admit(key) -> Ticket`, or raises `Refused(reason)`: reason `"per_key"` (this key already has
  `per_key` admitted: answer 429) or `"full"` (`capacity` reached: answer 503). Constant time.
- `await gate.turn(ticket)`: waits for a slot (round-robin over the keys waiting, FIFO within a key);
  raises `Refused("busy")` after `wait_s` without one. Cancelling the waiter gives the slot back.
- `gate.leave(ticket)`: gives back the slot (if it held one) and the admission; idempotent.
- `with gate.admitted(key) as ticket:` admit + leave on exit.
- `.admitted_count`, `.running`, `.waiting` (for tests and metrics).

Memory is bounded by `capacity`: keys are deleted when they hold nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass


class Refused(Exception):
    """Not admitted: `reason` is "per_key", "full" or "busy" (no slot within the wait)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class Ticket:
    key: str
    running: bool = False
    done: bool = False


class FairGate:
    def __init__(self, slots: int, per_key: int, capacity: int, wait_s: float) -> None:
        self.slots = max(1, slots)
        self.per_key = max(0, per_key)
        self.capacity = max(self.slots, capacity)
        self.wait_s = wait_s
        self.running = 0
        self.admitted_count = 0
        self._per_key: dict[str, int] = {}
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    def admit(self, key: str) -> Ticket:
        held = self._per_key.get(key, 0)
        if self.per_key and held >= self.per_key:
            raise Refused("per_key")
        if self.admitted_count >= self.capacity:
            raise Refused("full")
        self._per_key[key] = held + 1
        self.admitted_count += 1
        return Ticket(key)

    async def turn(self, ticket: Ticket) -> None:
        if ticket.done or ticket.running:
            raise RuntimeError("a ticket takes one turn")
        if self.running < self.slots and not self._waiting:
            self.running += 1
            ticket.running = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(ticket.key, deque()).append(waiter)
        try:
            async with asyncio.timeout(self.wait_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._hand_on()  # the slot reached us as we gave up: pass it on
            else:
                waiter.cancel()
                self._unqueue(ticket.key, waiter)
            if isinstance(exc, TimeoutError):
                raise Refused("busy") from None
            raise
        ticket.running = True  # the slot was handed over by `_hand_on`: `running` already counts it

    def leave(self, ticket: Ticket) -> None:
        if ticket.done:
            return
        ticket.done = True
        if ticket.running:
            ticket.running = False
            self._hand_on()
        self.admitted_count -= 1
        held = self._per_key.get(ticket.key, 0) - 1
        if held > 0:
            self._per_key[ticket.key] = held
        else:
            self._per_key.pop(ticket.key, None)

    @contextlib.contextmanager
    def admitted(self, key: str) -> Iterator[Ticket]:
        ticket = self.admit(key)
        try:
            yield ticket
        finally:
            self.leave(ticket)

    def _hand_on(self) -> None:
        """A slot is free: give it to the next key in turn, or count it free."""
        while self._waiting:
            key, queue = next(iter(self._waiting.items()))
            waiter = queue.popleft()
            if queue:
                self._waiting.move_to_end(key)  # its next request waits for every other key's turn
            else:
                del self._waiting[key]
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to it: `running` is unchanged
                return
        self.running -= 1

    def _unqueue(self, key: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(waiter)
        if not queue:
            del self._waiting[key]
