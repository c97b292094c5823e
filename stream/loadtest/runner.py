"""One bounded load-test run: ramp players up, stream for the duration, drain, scrape, report."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from stream.loadtest.clients import Player as WsPlayer
from stream.loadtest.clients import PredictPlayer, SessionInfo, Spectator, clock, create_session
from stream.loadtest.frames import DEFAULT_COUNTING_MAP, FrameSource
from stream.loadtest.scrape import Snapshot, scrape, usage_between
from stream.loadtest.stats import PlayerStats, SpectatorStats, build_report

MODES = ("ws", "edge", "predict")  # edge: the play socket with landmarks instead of JPEGs


@dataclass(frozen=True)
class RunConfig:
    url: str = "http://127.0.0.1:8000"
    mode: str = "ws"
    players: int = 4
    fps: float = 15.0
    duration_s: float = 20.0
    spectators: int = 0  # per player/session
    ramp_up_s: float = 2.0
    warmup_s: float = 1.0
    max_in_flight: int = 2
    frame_timeout_s: float = 2.0
    width: int = 320
    height: int = 240
    quality: int = 70
    images_dir: Path | None = None
    progress: bool = True
    counting_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_COUNTING_MAP))
    scrape_interval_s: float = 2.0


async def run(config: RunConfig, source: FrameSource) -> dict[str, Any]:
    base = config.url.rstrip("/")
    player_stats = [PlayerStats() for _ in range(config.players)]
    spectator_stats: list[SpectatorStats] = []
    cpu_start = time.process_time()
    limits = httpx.Limits(max_connections=max(10, config.players * 2),
                          max_keepalive_connections=config.players)
    async with httpx.AsyncClient(limits=limits) as http:
        start_snapshot = await scrape(http, base, clock())
        t0 = clock()
        stop_at = t0 + config.ramp_up_s + config.duration_s
        peak = _PeakRss(start_snapshot)
        sampler = asyncio.create_task(_sample_rss(http, base, peak, config.scrape_interval_s))
        tasks = []
        for i, stats in enumerate(player_stats):
            start_at = t0 + (config.ramp_up_s * i / config.players if config.players else 0.0)
            if config.mode == "predict":
                tasks.append(asyncio.create_task(_predict_player(http, base, source, config, stats, start_at,
                                                                 stop_at)))
            else:
                tasks.append(asyncio.create_task(
                    _ws_player(http, base, source, config, stats, spectator_stats, start_at, stop_at)
                ))
        await _progress(tasks, player_stats, t0, stop_at, config)
        elapsed = clock() - t0
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        end_snapshot = await scrape(http, base, clock())
    server = usage_between(start_snapshot, end_snapshot, peak.value)
    return build_report(
        mode=config.mode,
        players=player_stats,
        spectators=spectator_stats,
        fps=config.fps,
        duration_s=config.duration_s,
        elapsed_s=elapsed,
        spectators_per_player=config.spectators,
        width=config.width,
        height=config.height,
        quality=config.quality,
        url=base,
        server=server,
        client_cpu_seconds=time.process_time() - cpu_start,
        mean_frame_bytes=source.mean_bytes,
    ) | {"ramp_up_s": config.ramp_up_s, "warmup_s": config.warmup_s, "max_in_flight": config.max_in_flight,
         "images": {"dir": str(config.images_dir) if config.images_dir else None,
                    "gestures": [step.gesture for step in source.schedule]}}


async def _sleep_until(at: float) -> None:
    delay = at - clock()
    if delay > 0:
        await asyncio.sleep(delay)


async def _ws_player(
    http: httpx.AsyncClient,
    base: str,
    source: FrameSource,
    config: RunConfig,
    stats: PlayerStats,
    spectator_stats: list[SpectatorStats],
    start_at: float,
    stop_at: float,
) -> None:
    await _sleep_until(start_at)
    session: SessionInfo | None = await create_session(http, base, stats)
    if session is None:
        return
    player = WsPlayer(
        source,
        fps=config.fps,
        max_in_flight=config.max_in_flight,
        frame_timeout_s=config.frame_timeout_s,
        warmup_s=config.warmup_s,
        counting_map=config.counting_map,
        stats=stats,
    )
    stop_watching = asyncio.Event()
    play = asyncio.create_task(player.run(session, stop_at))
    watchers = []
    welcomed = asyncio.create_task(player.welcomed.wait())
    await asyncio.wait({play, welcomed}, return_when=asyncio.FIRST_COMPLETED)
    welcomed.cancel()
    for _ in range(config.spectators if player.stats.connected and not play.done() else 0):
        spectator = Spectator()
        spectator_stats.append(spectator.stats)
        watchers.append(asyncio.create_task(spectator.run(session, stop_watching)))
    try:
        await play
    finally:
        stop_watching.set()
        await asyncio.gather(*watchers, return_exceptions=True)


async def _predict_player(
    http: httpx.AsyncClient,
    base: str,
    source: FrameSource,
    config: RunConfig,
    stats: PlayerStats,
    start_at: float,
    stop_at: float,
) -> None:
    await _sleep_until(start_at)
    player = PredictPlayer(source, fps=config.fps, warmup_s=config.warmup_s, stats=stats)
    await player.run(http, base, stop_at)


class _PeakRss:
    def __init__(self, snapshot: Snapshot | None) -> None:
        self.value = snapshot.rss_bytes if snapshot else None

    def observe(self, snapshot: Snapshot | None) -> None:
        if snapshot is not None and snapshot.rss_bytes is not None:
            self.value = max(self.value or 0.0, snapshot.rss_bytes)


async def _sample_rss(http: httpx.AsyncClient, base: str, peak: _PeakRss, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        peak.observe(await scrape(http, base, clock()))


async def _progress(
    tasks: list[asyncio.Task[None]], stats: list[PlayerStats], t0: float, stop_at: float, config: RunConfig
) -> None:
    """Waits for every player (bounded: they stop at `stop_at`, plus a grace for draining/closing)."""
    hard_deadline = stop_at + config.frame_timeout_s + 20.0
    total = stop_at - t0
    bar = tqdm(total=round(total, 1), unit="s", disable=not config.progress, leave=False,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")
    try:
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.5)
            now = clock()
            bar.n = round(min(now - t0, total), 1)
            bar.set_postfix_str(
                f"sent {sum(s.frames_sent for s in stats)} replies {sum(s.replies_total for s in stats)}",
                refresh=True,
            )
            if now > hard_deadline:
                for task in pending:
                    task.cancel()
                    stats[tasks.index(task)].errors["client_timeout"] += 1
                await asyncio.gather(*pending, return_exceptions=True)
                break
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                stats[tasks.index(task)].errors[f"client_{type(exc).__name__}"] += 1
    finally:
        bar.close()
