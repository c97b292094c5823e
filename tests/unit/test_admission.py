"""stream.edge.admission.FairGate (admission before the body, round-robin turns across addresses) and
stream.edge.bodies.multipart_field (bounded work whatever the body holds)."""

from __future__ import annotations

import asyncio

import pytest

from stream.edge.admission import FairGate, Refused
from stream.edge.bodies import MultipartError, multipart_field

CT = "multipart/form-data; boundary=XyZ"


def form(*parts: tuple[str, bytes], close: bool = True) -> bytes:
    out = [
        b'--XyZ\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + content + b"\r\n"
        for name, content in parts
    ]
    return b"".join(out) + (b"--XyZ--\r\n" if close else b"")


def test_admission_is_refused_per_key_and_when_full() -> None:
    gate = FairGate(slots=1, per_key=2, capacity=3, wait_s=1.0)
    a1, a2 = gate.admit("a"), gate.admit("a")
    with pytest.raises(Refused) as refused:
        gate.admit("a")
    assert refused.value.reason == "per_key"
    b1 = gate.admit("b")
    with pytest.raises(Refused) as refused:
        gate.admit("c")
    assert refused.value.reason == "full"
    for ticket in (a1, a2, b1):
        gate.leave(ticket)
        gate.leave(ticket)  # idempotent
    assert gate.admitted_count == 0 and not gate._per_key  # memory: keys go when they hold nothing
    gate.leave(gate.admit("c"))


async def test_turns_go_round_robin_across_keys() -> None:
    gate = FairGate(slots=1, per_key=0, capacity=100, wait_s=5.0)
    holder = gate.admit("x")
    await gate.turn(holder)
    order: list[str] = []

    async def one(key: str) -> None:
        ticket = gate.admit(key)
        try:
            await gate.turn(ticket)
            order.append(key)
            await asyncio.sleep(0)
        finally:
            gate.leave(ticket)

    # The attacker queues five before the honest client queues one: the honest one goes second.
    tasks = [asyncio.create_task(one("attacker")) for _ in range(5)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(one("honest")))
    await asyncio.sleep(0)
    assert gate.waiting == 6
    gate.leave(holder)
    await asyncio.gather(*tasks)
    assert order[:2] == ["attacker", "honest"], order
    assert gate.running == 0 and gate.admitted_count == 0 and gate.waiting == 0


async def test_a_turn_times_out_and_a_cancelled_waiter_gives_its_place_back() -> None:
    gate = FairGate(slots=1, per_key=0, capacity=10, wait_s=0.05)
    holder = gate.admit("x")
    await gate.turn(holder)
    late = gate.admit("y")
    with pytest.raises(Refused) as refused:
        await gate.turn(late)
    assert refused.value.reason == "busy"
    gate.leave(late)
    waiter = gate.admit("z")
    task = asyncio.create_task(gate.turn(waiter))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.leave(waiter)
    assert gate.waiting == 0
    gate.leave(holder)
    assert gate.running == 0
    again = gate.admit("y")
    await gate.turn(again)  # the slot is free again
    gate.leave(again)


def test_multipart_field_is_found() -> None:
    body = form(("name", b"x"), ("file", b"\xff\xd8\xffJPEG\r\n--almost"))
    assert multipart_field(body, CT, "file", 4) == b"\xff\xd8\xffJPEG\r\n--almost"
    assert multipart_field(form(("other", b"x")), CT, "file", 4) is None
    quoted = 'multipart/form-data; boundary="XyZ"'
    assert multipart_field(b"preamble\r\n" + form(("file", b"img")), quoted, "file", 4) == b"img"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (form(*[("a", b"")] * 5, ("file", b"img")), "too_many_parts"),
        (form(("file", b"img"), *[("a", b"")] * 77_000), "too_many_parts"),  # also after the wanted part
        (form(("file", b"img"), close=False), "bad_request"),  # no closing delimiter
        (b"--XyZ\r\n" + b"H" * 100_000 + b"\r\n--XyZ--", "bad_request"),  # endless part headers
        (b"no delimiter at all", "bad_request"),
    ],
)
def test_multipart_refusals(body: bytes, code: str) -> None:
    with pytest.raises(MultipartError) as refused:
        multipart_field(body, CT, "file", 4)
    assert refused.value.code == code


def test_a_boundary_is_required() -> None:
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=" + "b" * 71):
        with pytest.raises(MultipartError) as refused:
            multipart_field(form(("file", b"img")), content_type, "file", 4)
        assert refused.value.code == "bad_request"
