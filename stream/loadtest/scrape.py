"""Server CPU, memory and per-stage time from the server's Prometheus /metrics.

Works against any host the tool targets (no local process access needed); deltas between two scrapes
give what the run itself cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from stream.loadtest.stats import ServerUsage

STAGE_METRIC = "gesture_maze_stage_seconds"


@dataclass(frozen=True)
class Snapshot:
    """The few samples the report needs, taken at `at` (client monotonic seconds)."""

    at: float
    cpu_seconds: float | None = None
    rss_bytes: float | None = None
    stage_sum: Mapping[str, float] = field(default_factory=dict)
    stage_count: Mapping[str, float] = field(default_factory=dict)
    frames_processed: float | None = None
    frames_dropped: Mapping[str, float] = field(default_factory=dict)


def parse_metrics(text: str, at: float) -> Snapshot:
    cpu = rss = processed = None
    stage_sum: dict[str, float] = {}
    stage_count: dict[str, float] = {}
    dropped: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "process_cpu_seconds_total":
                cpu = value
            elif name == "process_resident_memory_bytes":
                rss = value
            elif name == f"{STAGE_METRIC}_sum":
                stage_sum[labels.get("stage", "")] = value
            elif name == f"{STAGE_METRIC}_count":
                stage_count[labels.get("stage", "")] = value
            elif name == "gesture_maze_frames_processed_total":
                processed = value
            elif name == "gesture_maze_frames_dropped_total":
                dropped[labels.get("reason", "")] = value
    return Snapshot(at, cpu, rss, stage_sum, stage_count, processed, dropped)


async def scrape(client: httpx.AsyncClient, base_url: str, at: float) -> Snapshot | None:
    """One /metrics scrape; None if the server does not expose it (the report then shows '-')."""
    try:
        response = await client.get(f"{base_url}/metrics", timeout=5.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return parse_metrics(response.text, at)


def usage_between(start: Snapshot | None, end: Snapshot | None, peak_rss: float | None) -> ServerUsage:
    if start is None or end is None:
        return ServerUsage()
    cpu = (
        end.cpu_seconds - start.cpu_seconds
        if end.cpu_seconds is not None and start.cpu_seconds is not None
        else None
    )
    stage_mean: dict[str, float] = {}
    for stage, total in end.stage_sum.items():
        count = end.stage_count.get(stage, 0.0) - start.stage_count.get(stage, 0.0)
        if count > 0:
            stage_mean[stage] = (total - start.stage_sum.get(stage, 0.0)) / count * 1000.0
    processed = (
        end.frames_processed - (start.frames_processed or 0.0) if end.frames_processed is not None else None
    )
    dropped = {k: v - start.frames_dropped.get(k, 0.0) for k, v in end.frames_dropped.items()}
    rss_values = [v for v in (start.rss_bytes, end.rss_bytes, peak_rss) if v is not None]
    return ServerUsage(
        cpu_seconds=cpu,
        wall_seconds=end.at - start.at,
        rss_start_bytes=start.rss_bytes,
        rss_peak_bytes=max(rss_values) if rss_values else None,
        rss_end_bytes=end.rss_bytes,
        stage_mean_ms=stage_mean,
        frames_processed=processed,
        frames_dropped=dropped,
    )
