"""Hardening II: one client must not be able to stall, bloat or lock out the server.

Every class of attack runs against `gesture-maze serve` in its own process (so its RSS can be read)
while an honest player on another address streams real hand photos at 15 fps and moves every 200 ms.
`tests.support.abuse` measures the honest player's same-run baseline, runs the attack in a separate
process, and checks the issue's bounds: frame and move p95 within 3x baseline, <= 5 % of frames
unanswered (or 3x the baseline's share), /health within 1 s throughout, RSS back within 50 MiB; on a
busy machine the latency bound also allows what the measuring client's own scheduling delay grew by
(see `AbuseReport.check`). Each test then checks that the attack got its documented answer, and that
the server logged each abusive connection once at most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import attacks
from tests.support.abuse import (
    AbuseReport,
    ServerProcess,
    Target,
    attack_process,
    honest_photos,
    run_under_attack,
)

SERVER_ENV = {
    "GM_LOG_LEVEL": "warning",
    "GM_MODEL_POLL_S": "0",
    "GM_HEADER_TIMEOUT_S": "2",
    "GM_MAX_SOCKETS_PER_IP": "64",
    "GM_MAX_SESSIONS": "50",
    "GM_MAX_SESSIONS_PER_IP": "5",
    "GM_WS_JOINS_PER_10S": "0",  # each attack meets the limit it is about, not the handshake rate
    "GM_WS_JOINS_PER_S": "0",
    "GM_UNJOINED_SESSION_TTL_S": "2",
    "GM_SESSION_GRACE_S": "3",
    "GM_REAPER_INTERVAL_S": "0.5",
}


@pytest.fixture(scope="module")
def honest_frames() -> list[bytes]:
    return honest_photos()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, honest_frames: list[bytes]) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("abuse")
    env = {**SERVER_ENV, "GM_DATA_DIR": str(folder / "data")}
    # A 1,024 descriptor limit (soft and hard), as on many hosts: the slowloris case opens more.
    running = ServerProcess(env, folder / "server.log", fd_limit=1024).start()
    assert psutil.Process(running.pid).rlimit(psutil.RLIMIT_NOFILE) == (1024, 1024)
    # Steady state first: /predict keeps up to one static-image hand tracker per pool worker (a
    # bounded cache); made now, they are part of every test's RSS baseline, not of an attack's cost.
    photo = honest_frames[0]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: running.predict(photo), range(4)))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def attack_pool() -> Iterator[ProcessPoolExecutor]:
    with attack_process(attacks.warm_up) as pool:
        yield pool


# --- what each attack must have been answered with ----------------------------------------------
def deflate_refused(report: AbuseReport) -> None:
    outcome = report.outcome
    assert outcome["negotiated"] and not any(outcome["negotiated"]), "permessage-deflate was negotiated"
    # Compressed frames without the extension are a protocol error: closed before anything inflates.
    assert set(outcome["codes"]) == {1002}, Counter(outcome["codes"])
    assert report.log_lines("(close 1002)") == len(outcome["codes"])


def fragments_cut_off(report: AbuseReport) -> None:
    outcome = report.outcome
    # 1009, or a reset when the (lowest-priority) attacker read the close frame too late.
    assert set(outcome["codes"]) <= {1009, None} and 1009 in outcome["codes"], Counter(outcome["codes"])
    assert report.log_lines("frames in one message") == len(outcome["codes"])  # once per connection


def pings_cut_off(report: AbuseReport) -> None:
    outcome = report.outcome
    assert outcome["closed"] and all(outcome["closed"]), outcome
    assert report.log_lines("pings") == len(outcome["closed"])


def heads_refused(report: AbuseReport) -> None:
    outcome = report.outcome
    kinds = set(outcome["answers"])
    assert kinds == {(414, "request_line_too_long"), (431, "header_too_large")}, kinds
    assert report.log_lines(": HTTP 4") == len(outcome["answers"])  # once per connection


def slowloris_bounded(report: AbuseReport) -> None:
    outcome = report.outcome
    assert outcome["newcomer"] == 201, outcome
    assert outcome["newcomer_s"] < 2.0, outcome
    statuses = outcome["statuses"]
    # GM_MAX_SOCKETS_PER_IP (64) per address are held until the header timeout (408); beyond it the
    # server answers 503 and closes at once, without lingering (the client mostly sees a reset).
    assert set(statuses) <= {"503", "408", "None"} and sum(statuses.values()) == 1100, statuses
    cap, timeout_s = int(SERVER_ENV["GM_MAX_SOCKETS_PER_IP"]), float(SERVER_ENV["GM_HEADER_TIMEOUT_S"])
    for address in {address for address, *_ in outcome["sockets"]}:
        mine = [s for s in outcome["sockets"] if s[0] == address]
        held = [(began, arrived) for _, began, arrived, status in mine if status == 408]
        # Every address filled its slots and was refused beyond them...
        assert len(held) >= cap and len(held) < len(mine), (address, len(held), len(mine))
        # ...and never held more than `cap` at once. A slot frees only when its socket's head times
        # out, so how many 408s an address gets over the attack depends on how fast the attacker
        # could open sockets (a busy machine: slowly, so freed slots are taken again; 4 x 64 only
        # when each address opened all its sockets within one timeout). What holds at any speed:
        # the server held a 408 socket throughout [arrived - timeout, began + timeout] (accepted
        # after `began`, answered a timeout after that and before `arrived`), less a margin for the
        # server loop's cached clock.
        margin = 0.25
        spans = [(arrived - timeout_s + margin, began + timeout_s - margin) for began, arrived in held]
        assert max_overlap(spans) <= cap, (address, max_overlap(spans))
    assert outcome["held_s"] < 5.0, outcome  # GM_HEADER_TIMEOUT_S=2 from the first byte, + linger


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most of the closed intervals [start, end] that share one instant (empty ones: none)."""
    kept = [(start, end) for start, end in intervals if start <= end]
    edges = sorted([(start, 0) for start, _ in kept] + [(end, 1) for _, end in kept])
    most = current = 0
    for _, is_end in edges:  # at equal times starts (0) sort before ends (1): closed intervals touch
        current += -1 if is_end else 1
        most = max(most, current)
    return most


def bodies_refused(report: AbuseReport) -> None:
    outcome = report.outcome
    # A chunked create body (no length to judge by) may meet the creation rate first: 429, from the head.
    answers = set(outcome["answers"]) - {(429, "rate_limited")}
    assert answers == {(413, "body_too_large"), (413, "frame_too_large")}, outcome


def costly_jpegs_refused(report: AbuseReport) -> None:
    outcome = report.outcome
    assert set(outcome["codes"]) <= {"unsupported_jpeg", "rate_limited"}, outcome
    assert outcome["codes"].get("unsupported_jpeg", 0) > 10, outcome
    assert outcome["predict"] == [(400, "unsupported_jpeg")] * 2, outcome


def thin_jpegs_answered(report: AbuseReport) -> None:
    outcome = report.outcome
    assert set(outcome["codes"]) <= {"frame_dimensions", "rate_limited"}, outcome
    assert outcome["codes"].get("frame_dimensions", 0) > 10, outcome
    (one, two, narrow, flat) = outcome["predict"]
    for status, content_type, body in (one, two):
        assert status == 400 and content_type == "application/json", (status, body)
        assert body["error"]["code"] == "frame_dimensions"
    for status, _, body in (narrow, flat):  # thin but usable: analysed, no 0-px resize
        assert status == 200 and body["hand"] is False, body


def slots_not_hoarded(report: AbuseReport) -> None:
    outcome = report.outcome
    statuses = outcome["statuses"]
    # Each address holds at most GM_MAX_SESSIONS_PER_IP (some may still hold one from an earlier test)
    # and is refused beyond it; the rest of the server's slots stay free for others.
    assert len(outcome["created"]) == 4 and max(outcome["created"].values()) == 5, outcome
    assert set(statuses) == {"201", "429 too_many_sessions"}, outcome
    assert statuses["429 too_many_sessions"] >= 4, outcome
    assert outcome["held"] <= 4 * 5 + 3, outcome
    assert outcome["newcomer"] == 201, outcome
    assert outcome["left"] <= 2, outcome  # never joined: expired (the honest player's + newcomer's own)


def hosts_refused(report: AbuseReport) -> None:
    outcome = report.outcome
    assert set(outcome["answers"]) == {(400, "host_not_allowed")}, outcome


def utf8_refused(report: AbuseReport) -> None:
    outcome = report.outcome
    assert set(outcome["codes"]) == {1007}, outcome
    # One warning per abusive connection, not per message, and no traceback.
    assert report.log_lines("not valid UTF-8") == len(outcome["codes"])
    assert "Traceback" not in report.log


def errors_are_json(report: AbuseReport) -> None:
    outcome = report.outcome
    assert set(outcome["answers"]) == {
        (404, "application/json not_found"),
        (405, "application/json method_not_allowed"),
        (400, "bad_request"),
    }, outcome


CASES: dict[str, tuple[Callable[..., Any], Callable[[AbuseReport], None], float]] = {
    "deflate_bomb": (attacks.deflate_bomb, deflate_refused, 3.0),
    "empty_continuation_flood": (attacks.empty_continuation_flood, fragments_cut_off, 3.0),
    "one_byte_fragments": (attacks.one_byte_fragments, fragments_cut_off, 3.0),
    "unread_pings": (attacks.unread_pings, pings_cut_off, 3.0),
    "oversize_heads": (attacks.oversize_heads, heads_refused, 3.0),
    "slowloris": (attacks.slowloris, slowloris_bounded, 3.0),
    "oversize_bodies": (attacks.oversize_bodies, bodies_refused, 3.0),
    "costly_jpegs": (attacks.costly_jpegs, costly_jpegs_refused, 3.0),
    "thin_jpegs": (attacks.thin_jpegs, thin_jpegs_answered, 2.0),
    "session_hoarding": (attacks.session_hoarding, slots_not_hoarded, 4.5),
    "rebinding_host": (attacks.rebinding_host, hosts_refused, 2.0),
    "invalid_utf8": (attacks.invalid_utf8, utf8_refused, 2.0),
    "plain_text_errors": (attacks.plain_text_errors, errors_are_json, 2.0),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_attack_is_bounded_while_an_honest_player_plays(
    name: str,
    server: ServerProcess,
    honest_frames: list[bytes],
    attack_pool: ProcessPoolExecutor,
    tmp_path: Path,
) -> None:
    attack, answered, duration_s = CASES[name]
    target = Target(server.port, duration_s=duration_s)
    report = await run_under_attack(server, honest_frames, attack, attack_pool, name=name, target=target)
    answered(report)
    report.check()
