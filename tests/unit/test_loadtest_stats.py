"""The load-test tool's numbers: percentiles, reply bookkeeping, report, table, frames and /metrics deltas."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.loadtest.cli import build_parser, is_loopback, main
from stream.loadtest.clients import Player, SessionInfo
from stream.loadtest.frames import (
    DEFAULT_COUNTING_MAP,
    MOVE_GESTURES,
    NEUTRAL_GESTURE,
    FrameSource,
    FrameSourceError,
    gesture_schedule,
)
from stream.loadtest.scrape import parse_metrics, usage_between
from stream.loadtest.stats import (
    PlayerStats,
    ServerUsage,
    SpectatorStats,
    Summary,
    build_report,
    check_failures,
    format_table,
    percentile,
)
from stream.metrics import Metrics
from stream.settings import Settings

# --- percentiles ------------------------------------------------------------------------------------


def test_percentile_of_known_values():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
    st.floats(min_value=0, max_value=100),
)
def test_percentile_matches_numpy_linear(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)
    assert min(values) <= percentile(values, q) <= max(values)


def test_summary_of_empty_and_values():
    assert Summary.of([]).to_dict() == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None,
                                        "mean": None}
    s = Summary.of([10.0, 20.0, 30.0, 40.0])
    assert (s.count, s.p50, s.max, s.mean) == (4, 25.0, 40.0, 25.0)


# --- report -----------------------------------------------------------------------------------------


def _player(latencies, sent, processed, dropped, errors=None, replies=None):
    return PlayerStats(
        frames_sent=sent, frames_processed=processed, frames_dropped=dropped,
        frame_latency_ms=list(latencies),
        replies_total=processed if replies is None else replies, errors=Counter(errors or {}),
        ticks=sent + 2, ticks_skipped=2, server_dropped=dropped, measured_s=10.0,
    )


def _report(players, spectators=(), server=None):
    return build_report(
        mode="ws", players=players, spectators=list(spectators), fps=15.0, duration_s=10.0, elapsed_s=10.0,
        spectators_per_player=1, width=320, height=240, quality=70, url="http://127.0.0.1:1",
        server=server, client_cpu_seconds=1.5, mean_frame_bytes=5000.0,
    )


def test_report_has_the_contract_fields_and_pools_players():
    players = [_player([10, 20, 30], sent=4, processed=3, dropped=1), _player([40], sent=1, processed=1,
                                                                                dropped=0)]
    spectators = [SpectatorStats(states=5, delivery_delay_ms=[1.0, 3.0])]
    server = ServerUsage(cpu_seconds=4.0, wall_seconds=10.0, rss_start_bytes=100 * 2**20,
                         rss_peak_bytes=120 * 2**20, rss_end_bytes=110 * 2**20, frames_processed=4.0,
                         stage_mean_ms={"total": 12.5})
    report = _report(players, spectators, server)
    assert report["frame_latency_ms"]["p50"] == 25.0
    assert report["frame_latency_ms"]["max"] == 40.0
    assert (report["frames"]["sent"], report["frames"]["processed"], report["frames"]["dropped"]) == (5, 4, 1)
    assert report["drop_ratio"] == pytest.approx(0.2)
    assert report["players"] == 2 and report["fps"] == 15.0
    assert report["throughput_fps"] == pytest.approx(0.4)
    assert report["spectator_delay_ms"]["count"] == 2
    assert report["server"]["cpu_cores"] == pytest.approx(0.4)
    assert report["server"]["rss_per_player_mb"] == pytest.approx(10.0)
    assert report["server"]["frames_per_cpu_second"] == pytest.approx(1.0)
    assert check_failures(report) == []
    json.dumps(report)  # serialisable as is


def test_check_fails_on_errors_silent_players_and_blind_spectators():
    players = [_player([5], 1, 1, 0, errors={"corrupt_jpeg": 2}), _player([], 3, 0, 0, replies=0)]
    report = _report(players, [SpectatorStats(states=0)])
    problems = check_failures(report)
    assert report["errors"] == {"corrupt_jpeg": 2}
    assert any("corrupt_jpeg" in p for p in problems)
    assert any("no frame replies" in p for p in problems)
    assert any("spectator" in p for p in problems)


def test_table_shows_the_numbers():
    report = _report([_player([10, 20, 30], sent=4, processed=3, dropped=1, errors={"not_jpeg": 1})],
                     server=ServerUsage(cpu_seconds=2.0, wall_seconds=10.0,
                                        stage_mean_ms={"landmarks": 8.25}))
    table = format_table(report)
    assert "frame -> reply" in table and "20.0" in table  # p50
    assert "dropped 1 (25.0%" in table
    assert "not_jpeg=1" in table
    assert "landmarks 8.25" in table
    assert "0.2 cores" in table


# --- player bookkeeping: seq matching, drops, moves ---------------------------------------------------


def _bare_player(source):
    player = Player(source, fps=15, warmup_s=0.0, counting_map=DEFAULT_COUNTING_MAP)
    player._session = SessionInfo("s", "ws://x", "ws://y")
    return player


def _send(player, seq, at, gesture="one"):
    from stream.loadtest.clients import _Pending

    player._outstanding[seq] = _Pending(at, gesture, True)


def test_reply_settles_older_frames_as_dropped(frame_source):
    player = _bare_player(frame_source)
    for seq in (1, 2, 3):
        _send(player, seq, at=1.0)
    player._on_message({"type": "frame", "seq": 3, "hand": True, "gesture": "one", "dropped": 2}, now=1.05)
    stats = player.stats
    assert stats.frames_processed == 1 and stats.frames_dropped == 2 and stats.server_dropped == 2
    assert stats.frame_latency_ms == [pytest.approx(50.0)]
    assert stats.recognised == 1 and stats.hands == 1
    assert not player._outstanding


def test_frames_without_reply_time_out(frame_source):
    player = _bare_player(frame_source)
    _send(player, 1, at=0.0)
    _send(player, 2, at=5.0)
    player._expire(now=2.5)
    assert list(player._outstanding) == [2] and player.stats.frames_timed_out == 1


def test_move_latency_from_first_frame_of_gesture_to_move_state(frame_source):
    player = _bare_player(frame_source)
    player._gesture_changed("peace", now=10.0, counted=True)
    player._on_message({"type": "state", "version": 4,
                        "last_move": {"direction": "right", "ok": True, "source": "gesture"}}, now=10.3)
    assert player.stats.move_latency_ms == [pytest.approx(300.0)]
    assert player._session.player_versions == {4: 10.3}
    # A change to a move gesture that never moves counts as missed at the next change.
    player._gesture_changed("three", now=11.0, counted=True)
    player._gesture_changed(NEUTRAL_GESTURE, now=12.0, counted=True)
    assert player.stats.moves_missed == 1 and player.stats.gesture_changes == 2
    # A keyboard move is not a gesture move.
    player._gesture_changed("four", now=13.0, counted=True)
    player._on_message({"type": "state", "version": 5,
                        "last_move": {"direction": "up", "ok": True, "source": "keyboard"}}, now=13.1)
    assert len(player.stats.move_latency_ms) == 1
    player._on_message({"type": "state", "version": 6,
                        "last_move": {"direction": "up", "ok": False, "source": "gesture"}}, now=13.2)
    assert player.stats.moves_wrong_direction == 1  # four maps to left


def test_statistics_start_after_the_first_reply_plus_warmup(frame_source):
    player = Player(frame_source, fps=15, warmup_s=1.0, counting_map=DEFAULT_COUNTING_MAP)
    player._session = SessionInfo("s", "ws://x", "ws://y")
    _send(player, 1, at=0.0)
    player._outstanding[1].counted = False  # sent before any reply: never counted
    player._on_message({"type": "frame", "seq": 1, "hand": True, "gesture": "one", "dropped": 0}, now=2.0)
    assert player._counting_from == pytest.approx(3.0)
    assert player.stats.frames_processed == 0 and player.stats.replies_total == 1


def test_error_reply_releases_the_oldest_frame(frame_source):
    player = _bare_player(frame_source)
    _send(player, 1, at=0.0)
    _send(player, 2, at=0.1)
    player._on_message({"type": "error", "code": "corrupt_jpeg", "message": "bad"}, now=0.2)
    assert list(player._outstanding) == [2] and player.stats.errors == Counter({"corrupt_jpeg": 1})


# --- frame source -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame_source(request):
    images_dir = request.getfixturevalue("images_dir")
    return FrameSource.from_photos(images_dir, width=320, height=240, quality=70, variants=6)


def test_frames_are_jpegs_of_the_requested_size_that_vary(frame_source):
    for gesture in (*MOVE_GESTURES, NEUTRAL_GESTURE):
        pool = frame_source.frames[gesture]
        assert len(pool) == 6
        assert len(set(pool)) == 6  # every variant differs (video-like, not one frame repeated)
        image = cv2.imdecode(np.frombuffer(pool[0], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
    assert 1000 < frame_source.mean_bytes < 40_000


def test_quality_and_size_change_the_frames(images_dir):
    small = FrameSource.from_photos(images_dir, width=160, height=120, quality=30, variants=2)
    large = FrameSource.from_photos(images_dir, width=640, height=480, quality=90, variants=2)
    image = cv2.imdecode(np.frombuffer(small.frame("one", 0), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (120, 160, 3)
    assert large.mean_bytes > 3 * small.mean_bytes


def test_schedule_cycles_move_gestures_with_neutral_between(frame_source):
    assert [s.gesture for s in gesture_schedule()][:4] == ["one", "palm", "peace", "palm"]
    assert frame_source.gesture_at(0.0) == "one"
    assert frame_source.gesture_at(0.99) == "one"
    assert frame_source.gesture_at(1.2) == NEUTRAL_GESTURE
    assert frame_source.gesture_at(1.7) == "peace"
    assert frame_source.gesture_at(frame_source.cycle_s + 0.1) == "one"  # repeats
    assert set(DEFAULT_COUNTING_MAP) == set(MOVE_GESTURES)
    assert dict(Settings.from_env({}).counting_map) == dict(DEFAULT_COUNTING_MAP)  # same map as the server


def test_missing_photos_are_reported(tmp_path):
    with pytest.raises(FrameSourceError, match="missing photos"):
        FrameSource.from_photos(tmp_path)


# --- /metrics deltas ----------------------------------------------------------------------------------


def test_usage_between_two_real_metrics_scrapes():
    metrics = Metrics()
    metrics.stage_seconds.labels(stage="total").observe(0.010)
    metrics.frames_processed.inc()
    start = parse_metrics(metrics.render().decode(), at=100.0)
    for seconds in (0.020, 0.040):
        metrics.stage_seconds.labels(stage="total").observe(seconds)
        metrics.frames_processed.inc()
    metrics.frames_dropped.labels(reason="superseded").inc(3)
    end = parse_metrics(metrics.render().decode(), at=110.0)
    usage = usage_between(start, end, peak_rss=None)
    assert start.cpu_seconds is not None and start.rss_bytes > 0
    assert usage.stage_mean_ms["total"] == pytest.approx(30.0)
    assert usage.frames_processed == 2
    assert usage.frames_dropped == {"superseded": 3}
    assert usage.wall_seconds == 10.0 and usage.cpu_seconds >= 0
    assert usage_between(None, end, None) == ServerUsage()


# --- command line -------------------------------------------------------------------------------------


def test_only_loopback_by_default():
    assert build_parser().parse_args([]).url == "http://127.0.0.1:8000"
    assert is_loopback("http://127.0.0.1:8000") and is_loopback("http://localhost:1")
    assert is_loopback("http://[::1]:8000")
    assert not is_loopback("http://example.com")


@pytest.mark.parametrize("argv", [["--players", "0"], ["--players", "100000"], ["--fps", "0"],
                                  ["--duration", "99999"], ["--url", "ftp://x"], ["--quality", "0"]])
def test_unbounded_or_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
