"""Percentiles, per-run counters, the JSON report and its human table.

Pure functions over plain numbers so the numbers in the report can be unit-tested without a server.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; None when empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


@dataclass(frozen=True)
class Summary:
    """Distribution of one latency series, in milliseconds."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, None, None, None, None, None)
        return cls(
            count=len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=float(max(values)),
            mean=float(sum(values) / len(values)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50": _round(self.p50),
            "p95": _round(self.p95),
            "p99": _round(self.p99),
            "max": _round(self.max),
            "mean": _round(self.mean),
        }


@dataclass
class PlayerStats:
    """What one simulated player saw. Latencies in ms; frames counted only after the warm-up."""

    frames_sent: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0  # sent, never answered: superseded or rate-limited by the server
    frames_timed_out: int = 0  # no reply and no newer reply within the frame timeout
    frames_outstanding_at_end: int = 0
    ticks: int = 0
    ticks_skipped: int = 0  # flow control: too many frames in flight at the tick
    server_dropped: int = 0  # the last `dropped` field the server reported (whole connection)
    bytes_sent: int = 0
    frame_latency_ms: list[float] = field(default_factory=list)
    move_latency_ms: list[float] = field(default_factory=list)
    gesture_changes: int = 0  # changes to a gesture that maps to a move
    moves_seen: int = 0  # gesture-sourced moves reported in `state`
    moves_wrong_direction: int = 0
    moves_missed: int = 0  # gesture changes that produced no move before the next change
    recognised: int = 0  # replies whose gesture equals the gesture shown in that frame
    hands: int = 0  # replies with a hand found
    states: int = 0
    replies_total: int = 0  # including warm-up
    errors: Counter[str] = field(default_factory=Counter)
    connected: bool = False
    measured_s: float = 0.0  # seconds the statistics cover (after the warm-up, until the stop)


@dataclass
class SpectatorStats:
    states: int = 0
    gestures: int = 0
    delivery_delay_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    connected: bool = False


@dataclass(frozen=True)
class ServerUsage:
    """Server-side deltas scraped from /metrics over the run (None when /metrics was unavailable)."""

    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    rss_start_bytes: float | None = None
    rss_peak_bytes: float | None = None
    rss_end_bytes: float | None = None
    stage_mean_ms: Mapping[str, float] = field(default_factory=dict)
    frames_processed: float | None = None
    frames_dropped: Mapping[str, float] = field(default_factory=dict)

    @property
    def cpu_cores(self) -> float | None:
        if self.cpu_seconds is None or not self.wall_seconds:
            return None
        return self.cpu_seconds / self.wall_seconds


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def _merge_errors(groups: Iterable[Counter[str]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for errors in groups:
        total.update(errors)
    return dict(sorted(total.items()))


def build_report(
    *,
    mode: str,
    players: Sequence[PlayerStats],
    spectators: Sequence[SpectatorStats],
    fps: float,
    duration_s: float,
    elapsed_s: float,
    spectators_per_player: int,
    width: int,
    height: int,
    quality: int,
    url: str,
    server: ServerUsage | None = None,
    client_cpu_seconds: float | None = None,
    mean_frame_bytes: float | None = None,
) -> dict[str, Any]:
    """The JSON report: the contract fields (`frame_latency_ms`, `frames`, `drop_ratio`, `players`, `fps`)
    plus everything else the table shows."""
    frame_latency = [v for p in players for v in p.frame_latency_ms]
    move_latency = [v for p in players for v in p.move_latency_ms]
    delivery = [v for s in spectators for v in s.delivery_delay_ms]
    sent = sum(p.frames_sent for p in players)
    processed = sum(p.frames_processed for p in players)
    dropped = sum(p.frames_dropped + p.frames_timed_out for p in players)
    ticks = sum(p.ticks for p in players)
    skipped = sum(p.ticks_skipped for p in players)
    answered = sent - sum(p.frames_outstanding_at_end for p in players)
    server = server or ServerUsage()
    errors = _merge_errors([p.errors for p in players] + [s.errors for s in spectators])
    players_without_replies = sum(1 for p in players if p.replies_total == 0)
    spectators_without_states = sum(1 for s in spectators if s.states == 0)
    cores = server.cpu_cores
    # Each player's rate over the seconds it was measured, summed: the server's steady throughput.
    throughput = sum(p.frames_processed / p.measured_s for p in players if p.measured_s > 0)
    rss_delta = (
        server.rss_peak_bytes - server.rss_start_bytes
        if server.rss_peak_bytes is not None and server.rss_start_bytes is not None
        else None
    )
    return {
        "mode": mode,
        "url": url,
        "players": len(players),
        "spectators": len(spectators),
        "spectators_per_player": spectators_per_player,
        "fps": fps,
        "duration_s": duration_s,
        "elapsed_s": _round(elapsed_s),
        "frame": {
            "width": width, "height": height, "quality": quality, "mean_bytes": _round(mean_frame_bytes)
        },
        "frame_latency_ms": Summary.of(frame_latency).to_dict(),
        "move_latency_ms": Summary.of(move_latency).to_dict(),
        "spectator_delay_ms": Summary.of(delivery).to_dict(),
        "frames": {
            "sent": sent,
            "processed": processed,
            "dropped": dropped,
            "timed_out": sum(p.frames_timed_out for p in players),
            "outstanding_at_end": sent - answered,
            "server_dropped": sum(p.server_dropped for p in players),
            "ticks": ticks,
            "ticks_skipped": skipped,
            "hands": sum(p.hands for p in players),
            "recognised": sum(p.recognised for p in players),
        },
        "drop_ratio": _round(dropped / answered if answered > 0 else 0.0, 4),
        "skip_ratio": _round(skipped / ticks if ticks > 0 else 0.0, 4),
        "throughput_fps": _round(throughput),
        "target_fps_total": _round(fps * len(players)),
        "moves": {
            "gesture_changes": sum(p.gesture_changes for p in players),
            "seen": sum(p.moves_seen for p in players),
            "missed": sum(p.moves_missed for p in players),
            "wrong_direction": sum(p.moves_wrong_direction for p in players),
        },
        "spectator_states": sum(s.states for s in spectators),
        "spectator_gestures": sum(s.gestures for s in spectators),
        "errors": errors,
        "error_count": sum(errors.values()),
        "players_without_replies": players_without_replies,
        "spectators_without_states": spectators_without_states,
        "server": {
            "cpu_seconds": _round(server.cpu_seconds, 3),
            "cpu_cores": _round(cores, 3),
            "rss_start_mb": _round(_mb(server.rss_start_bytes)),
            "rss_peak_mb": _round(_mb(server.rss_peak_bytes)),
            "rss_end_mb": _round(_mb(server.rss_end_bytes)),
            "rss_per_player_mb": _round(_mb(rss_delta / len(players)) if rss_delta is not None and players
                                        else None),
            "frames_per_cpu_second": _round(
                server.frames_processed / server.cpu_seconds
                if server.frames_processed and server.cpu_seconds else None
            ),
            "frames_processed": server.frames_processed,
            "frames_dropped": dict(server.frames_dropped),
            "stage_mean_ms": {k: _round(v, 3) for k, v in sorted(server.stage_mean_ms.items())},
        },
        "client_cpu_seconds": _round(client_cpu_seconds, 3),
    }


def _mb(value: float | None) -> float | None:
    return None if value is None else value / (1024 * 1024)


def check_failures(report: Mapping[str, Any]) -> list[str]:
    """Why a `--check` run fails: errors, players that got no replies, spectators that got no state."""
    problems = []
    if report["error_count"]:
        problems.append(f"errors: {report['errors']}")
    if report["players_without_replies"]:
        problems.append(f"{report['players_without_replies']} player(s) got no frame replies")
    if report["spectators_without_states"]:
        problems.append(f"{report['spectators_without_states']} spectator(s) got no state")
    if report["players"] and report["frames"]["processed"] == 0:
        problems.append("no frame was processed")
    return problems


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{suffix}"
    return f"{value}{suffix}"


def format_table(report: Mapping[str, Any]) -> str:
    """The human-readable report printed to stdout."""
    frames = report["frames"]
    server = report["server"]
    lines = [
        f"gesture-maze loadtest ({report['mode']}) against {report['url']}: {report['players']} players x "
        f"{report['fps']:g} fps, {report['spectators']} spectators, {report['elapsed_s']:.1f} s, "
        f"{report['frame']['width']}x{report['frame']['height']} q{report['frame']['quality']} "
        f"(~{_fmt(report['frame']['mean_bytes'])} B/frame)",
        "",
        f"{'latency (ms)':<28}{'n':>8}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}",
    ]
    for label, key in (
        ("frame -> reply", "frame_latency_ms"),
        ("gesture -> move (felt)", "move_latency_ms"),
        ("spectator delivery delay", "spectator_delay_ms"),
    ):
        s = report[key]
        lines.append(
            f"{label:<28}{s['count']:>8}{_fmt(s['p50']):>9}{_fmt(s['p95']):>9}{_fmt(s['p99']):>9}"
            f"{_fmt(s['max']):>9}"
        )
    moves = report["moves"]
    lines += [
        "",
        f"frames   sent {frames['sent']}  processed {frames['processed']}  dropped {frames['dropped']} "
        f"({report['drop_ratio'] * 100:.1f}%, server-reported {frames['server_dropped']}, timed out "
        f"{frames['timed_out']})  ticks skipped by flow control {frames['ticks_skipped']}/{frames['ticks']} "
        f"({report['skip_ratio'] * 100:.1f}%)",
        f"         throughput {report['throughput_fps']:.1f} frames/s "
        f"(target {report['target_fps_total']:.0f})  hand found {frames['hands']}  "
        f"gesture recognised {frames['recognised']}",
        f"moves    gesture changes {moves['gesture_changes']}  moves seen {moves['seen']}  missed "
        f"{moves['missed']}  wrong direction {moves['wrong_direction']}",
        f"watchers states {report['spectator_states']}  gesture messages {report['spectator_gestures']}",
        f"server   cpu {_fmt(server['cpu_cores'])} cores ({_fmt(server['cpu_seconds'])} s)  rss "
        f"{_fmt(server['rss_start_mb'])} -> peak {_fmt(server['rss_peak_mb'])} MB "
        f"({_fmt(server['rss_per_player_mb'])} MB/player)  "
        f"frames/cpu-s {_fmt(server['frames_per_cpu_second'])}",
    ]
    if server["stage_mean_ms"]:
        stages = "  ".join(f"{k} {v:.2f}" for k, v in server["stage_mean_ms"].items())
        lines.append(f"stages   mean ms: {stages}")
    lines.append(f"client   cpu {_fmt(report['client_cpu_seconds'])} s")
    errors = report["errors"]
    lines.append("errors   " + (", ".join(f"{k}={v}" for k, v in errors.items()) if errors else "none"))
    return "\n".join(lines)
