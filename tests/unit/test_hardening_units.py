"""Hardening II building blocks without sockets: request-head meter, Host allow-list, session slots
per address and unjoined expiry, and the JPEG checks that run before decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maze import GameConfig
from model.frames import MAX_SCANS, MIN_SIDE, FrameError, decode_jpeg, frame_stats
from stream.edge.hosts import allowed_host_names, host_allowed
from stream.edge.transport import HeadMeter, TransportLimits
from stream.sessions.registry import SessionOptions, SessionRegistry
from stream.sessions.slots import OwnerLimitError, SlotPolicy

LIMITS = TransportLimits(max_head_bytes=1000, max_head_line_bytes=200, max_head_lines=10)


def meter_verdict(*chunks: bytes) -> tuple[int, str, str] | None:
    meter = HeadMeter(LIMITS)
    for chunk in chunks:
        verdict = meter.feed(chunk)
        if verdict is not None:
            return verdict
    return None


def test_head_meter_passes_ordinary_heads_in_any_chunking() -> None:
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"
    assert meter_verdict(head) is None
    assert meter_verdict(*(head[i : i + 1] for i in range(len(head)))) is None
    meter = HeadMeter(LIMITS)
    meter.feed(head + b"x" * 5000)  # a body after the head is not the head's
    assert meter.done


@pytest.mark.parametrize(
    ("chunks", "status", "code"),
    [
        ([b"GET /" + b"a" * 300], 414, "request_line_too_long"),
        ([b"GET / HTTP/1.1\r\nX: ", b"b" * 150, b"b" * 150], 431, "header_too_large"),
        ([b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 11], 431, "header_too_large"),
        ([b"GET / HTTP/1.1\r\n" + b"X: " + b"z" * 150 + b"\r\n"] * 7, 431, "header_too_large"),
    ],
)
def test_head_meter_refuses_oversize_heads(chunks: list[bytes], status: int, code: str) -> None:
    verdict = meter_verdict(*chunks)
    assert verdict is not None and verdict[:2] == (status, code)


def test_head_meter_work_is_bounded_by_the_line_cap() -> None:
    # 100k empty-ish lines in one chunk: refused after max_head_lines, without walking them all.
    verdict = meter_verdict(b"GET / HTTP/1.1\r\n" + b"a:\r\n" * 100_000)
    assert verdict is not None and verdict[1] == "header_too_large"


def test_host_allow_list() -> None:
    names = allowed_host_names("0.0.0.0", ("maze.example.com",))
    assert host_allowed("maze.example.com", names) and host_allowed("MAZE.example.com.:443", names)
    assert host_allowed("localhost:8000", names) and host_allowed("app.localhost", names)
    assert host_allowed("127.0.0.1:8000", names) and host_allowed("[::1]:8000", names)
    assert host_allowed("10.1.2.3", names)  # IP literals cannot be rebound
    assert host_allowed(None, names)
    assert not host_allowed("evil.example", names) and not host_allowed("evil.example:8000", names)
    assert not host_allowed("", names) and not host_allowed("localhost.evil.example", names)
    assert host_allowed("game.lan", allowed_host_names("game.lan"))
    assert host_allowed("anything.example", allowed_host_names("127.0.0.1", ("*",)))


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def registry(clock: Clock, **policy: float) -> SessionRegistry:
    return SessionRegistry(
        max_sessions=10,
        config_for=lambda o: GameConfig(width=o.width, height=o.height),
        clock=clock,
        slots=SlotPolicy(**policy),  # type: ignore[arg-type]
    )


OPTIONS = SessionOptions(width=5, height=5, seed=1, scheme="counting")


async def test_live_sessions_per_address_are_capped_and_given_back() -> None:
    clock = Clock()
    sessions = registry(clock, max_per_owner=2)
    first = [sessions.create(OPTIONS, owner="10.0.0.1") for _ in range(2)]
    with pytest.raises(OwnerLimitError):
        sessions.create(OPTIONS, owner="10.0.0.1")
    sessions.create(OPTIONS, owner="10.0.0.2")  # another address is not affected
    await sessions.remove(first[0])
    sessions.create(OPTIONS, owner="10.0.0.1")  # a slot given back can be used again


async def test_sessions_nobody_joined_expire_before_the_grace_period() -> None:
    clock = Clock()
    sessions = registry(clock, unjoined_ttl_s=30.0)
    lonely = sessions.create(OPTIONS, owner="10.0.0.1")
    played = sessions.create(OPTIONS, owner="10.0.0.1")
    played.joined = True  # what attach_player records
    played.player_left_at = clock.now
    clock.now += 31
    assert await sessions.reap(grace_s=120.0) == 1
    assert sessions.get(lonely.id) is None and sessions.get(played.id) is played


def jpeg(width: int, height: int, **params: int) -> bytes:
    flags = [item for pair in params.items() for item in (getattr(cv2, pair[0]), pair[1])]
    image = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image, flags)
    assert ok
    return buf.tobytes()


def code_of(data: bytes) -> str:
    with pytest.raises(FrameError) as refused:
        decode_jpeg(data, 10**7, 1920, 1920)
    return refused.value.code


def test_progressive_and_many_scan_jpegs_are_refused_before_decoding() -> None:
    assert code_of(jpeg(64, 64, IMWRITE_JPEG_PROGRESSIVE=1)) == "unsupported_jpeg"
    baseline = jpeg(64, 64)
    sos = baseline.index(b"\xff\xda")
    repeated = baseline[:sos] + baseline[sos:-2] * (MAX_SCANS + 1) + b"\xff\xd9"
    assert code_of(repeated) == "unsupported_jpeg"
    many_tables = baseline[:2] + b"\xff\xfe\x00\x04ab" * 100 + baseline[2:]  # 100 comment segments
    assert code_of(many_tables) == "unsupported_jpeg"
    assert decode_jpeg(baseline, 10**7, 1920, 1920).shape == (64, 64, 3)


def test_thin_frames_are_refused_and_statistics_never_resize_to_zero() -> None:
    assert code_of(jpeg(1, 1920)) == "frame_dimensions"
    assert code_of(jpeg(1920, 1)) == "frame_dimensions"
    for width, height in ((MIN_SIDE, 1920), (1920, MIN_SIDE)):
        rgb = decode_jpeg(jpeg(width, height), 10**7, 1920, 1920)
        stats = frame_stats(rgb, 1)
        assert (stats.width, stats.height) == (width, height) and stats.sharpness >= 0


def test_message_size_limit_counts_inflated_bytes_if_compression_were_on() -> None:
    # Compression is off in `gesture-maze serve`; should it ever be turned on, websockets applies
    # max_size to the inflated message: a 1.5 KB bomb inflating to 1.5 MiB is closed with 1009.
    import zlib

    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    from websockets.frames import Close
    from websockets.server import ServerProtocol

    server = ServerProtocol(extensions=[ServerPerMessageDeflateFactory()], max_size=64 * 1024)
    server.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    server.send_response(server.accept(server.events_received()[0]))
    assert server.extensions, "the test needs permessage-deflate negotiated"
    packer = zlib.compressobj(wbits=-15)
    bomb = packer.compress(b"\0" * (3 * 2**19)) + packer.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(bomb) < 2000
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(bomb))
    server.receive_data(bytes([0xC2, 0x80 | 126]) + len(bomb).to_bytes(2, "big") + mask + masked)
    assert isinstance(server.close_sent, Close) and server.close_sent.code == 1009


def test_compose_allows_the_host_name_prometheus_scrapes() -> None:
    import yaml

    from tests.support.paths import REPO_ROOT

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["app"]["environment"]
    scrape = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus.yml").read_text())
    jobs = scrape["scrape_configs"]
    targets = [t for job in jobs for static in job.get("static_configs", []) for t in static["targets"]]
    # dns_sd_configs scrape every replica by the address its name resolves to: Host is an IP literal.
    targets += [f"172.18.0.5:{sd['port']}" for job in jobs for sd in job.get("dns_sd_configs", [])]
    app_target = next(t for t in targets if t.endswith(":8000"))
    names = allowed_host_names(env["GM_HOST"], tuple(env.get("GM_ALLOWED_HOSTS", "").split(",")))
    assert host_allowed(app_target, names), f"Prometheus scrapes {app_target}, which the app would refuse"
