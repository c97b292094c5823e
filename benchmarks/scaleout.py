"""Scale-out: one process per core sharing Redis vs one process, and spectator fan-out over instances.

Two measurements, each against a same-run baseline on the same machine:

- `players`: the most players at F fps within p99 < 100 ms and < 5 % lost (the capacity search of
  benchmarks.capacity, `ws` mode), for `single` (one `gesture-maze serve`, default store) and for
  `workers` (`gesture-maze serve --workers W` with GM_STORE_URL on a redis-server this benchmark
  starts). Ratio = workers / single. (In `workers` mode the load test's server CPU/RSS figures come
  from whichever worker answered its /metrics scrape: latency and loss are the comparable numbers.)
- `spectators`: 1 player making M moves/s and S spectators; delivery latency from the player's move
  to each spectator's state (p50/p99), for S spectators on one instance (`single`) and spread evenly
  over I instances sharing Redis (`cluster`, relayed through pub/sub).

    .venv/bin/python -m benchmarks.scaleout --images ../shared/data/images --env GM_MODEL_COMPLEXITY=0
    .venv/bin/python -m benchmarks.scaleout --only spectators --spectators 1000 --instances 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from benchmarks.capacity import _line, _row
from benchmarks.common import RESULTS, free_port, run_loadtest, server, stamp, within_bounds
from maze import Maze, Point, solve


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="gm-bench-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


# --- players: capacity of one process vs one process per core --------------------------------------
def capacity(kind: str, args: argparse.Namespace, tag: str, redis_url: str | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    best = None
    failures = 0
    n = args.start
    while n <= args.max:
        env = dict(args.server_env)
        serve_args: tuple[str, ...] = ()
        if kind == "workers":
            assert redis_url is not None
            env["GM_STORE_URL"] = redis_url
            serve_args = ("--workers", str(args.workers))
        with server(f"{tag}-{kind}-{n}", env=env, args=serve_args) as srv:
            report = run_loadtest(srv.url, RESULTS / f"scaleout-{tag}-{kind}-{n}.json", [
                "--mode", "ws", "--players", str(n), "--fps", str(args.fps), "--duration", str(args.duration),
                "--ramp-up", "2", *(["--images", str(args.images)] if args.images else []),
            ])
        ok = within_bounds(report, args.p99_ms, args.max_loss)
        row = _row(kind, n, report, ok)
        steps.append(row)
        print(_line(row), flush=True)
        if ok:
            best, failures = row, 0
        else:
            failures += 1
            if failures >= args.patience:
                break
        n += args.step
    return {"kind": kind, "steps": steps, "best": best}


# --- spectators: delivery latency through one instance vs relayed over several -----------------------
async def fanout(urls: list[str], spectators: int, moves_per_s: float, duration: float) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        body = {"width": 20, "height": 20, "seed": 7}
        created = (await client.post(f"{urls[0]}/api/sessions", json=body)).json()
    sid = created["session_id"]
    ws_urls = [u.replace("http://", "ws://") for u in urls]
    received: list[tuple[int, float]] = []  # (version, receive time)
    joined: list[int] = []
    failed: list[str] = []
    all_joined = asyncio.Event()

    async def spectate(index: int) -> None:
        url = f"{ws_urls[index % len(ws_urls)]}/ws/watch/{sid}"
        try:
            ws = await connect(url, max_queue=None, open_timeout=60)
            await ws.recv()  # welcome
        except Exception as exc:  # counted, reported: a refused spectator is a result too
            failed.append(repr(exc)[:100])
            if len(joined) + len(failed) == spectators:
                all_joined.set()
            return
        joined.append(index)
        if len(joined) + len(failed) == spectators:
            all_joined.set()
        async with ws:
            async for text in ws:
                now = time.perf_counter()
                if '"last_move"' in text and text.startswith('{"type":"state"'):
                    message = json.loads(text)
                    received.append((message["version"], now))

    tasks = []
    for i in range(spectators):  # join in small batches: a real crowd does not arrive in one instant
        tasks.append(asyncio.ensure_future(spectate(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.25)
    await asyncio.wait_for(all_joined.wait(), 180)
    await asyncio.sleep(1.0)  # the joins' presence states settle before the measured moves
    sent: dict[int, float] = {}
    async with connect(f"{ws_urls[0]}{created['play_url']}", max_queue=None) as player:
        state = await _next_state(player)
        maze = Maze.from_dict(state["maze"], start=Point(**state["start"]), goal=Point(**state["goal"]))
        forth = solve(maze, Point(**state["player"]))[0]  # forth and back: every move counts, no win
        deadline = time.perf_counter() + duration
        i = 0
        while time.perf_counter() < deadline:
            direction = forth if i % 2 == 0 else forth.opposite
            t0 = time.perf_counter()
            await player.send(json.dumps({"type": "move", "direction": direction.value}))
            ack = await _next_state(player, with_move=True)
            sent[ack["version"]] = t0
            i += 1
            await asyncio.sleep(max(0.0, 1.0 / moves_per_s - (time.perf_counter() - t0)))
    await asyncio.sleep(2.0)  # let the last states arrive
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted((t - sent[v]) * 1000 for v, t in received if v in sent)
    expected = len(sent) * len(joined)
    return {
        "spectators": spectators,
        "joined": len(joined),
        "join_failures": failed[:5],
        "moves": len(sent),
        "deliveries": len(latencies),
        "delivered_ratio": round(len(latencies) / expected, 4) if expected else None,
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2) if latencies else None,
        "max_ms": round(latencies[-1], 2) if latencies else None,
    }


async def _next_state(ws: Any, with_move: bool = False) -> dict[str, Any]:
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "state" and (not with_move or "last_move" in message):
            return message


def spectators_run(kind: str, args: argparse.Namespace, tag: str, redis_url: str | None) -> dict[str, Any]:
    env = {**args.server_env, "GM_MAX_SPECTATORS": str(args.spectators), "GM_SEND_QUEUE_SIZE": "256"}
    count = 1
    if kind == "cluster":
        assert redis_url is not None
        env["GM_STORE_URL"] = redis_url
        count = args.instances
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(server(f"{tag}-fanout-{kind}-{i}", env=env)) for i in range(count)]
        load_before = os.getloadavg()[0]
        urls = [s.url for s in servers]
        result = asyncio.run(fanout(urls, args.spectators, args.moves_per_s, args.duration))
    result.update(kind=kind, instances=count, loadavg_1m_before=round(load_before, 2))
    print(f"{kind:>8} instances={count} spectators={args.spectators}: p50 {result['p50_ms']} ms "
          f"p99 {result['p99_ms']} ms delivered {result['delivered_ratio']}", flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["players", "spectators"], default=None)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes in `workers` mode")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per step / per fan-out run")
    p.add_argument("--start", type=int, default=4)
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--max", type=int, default=40)
    p.add_argument("--patience", type=int, default=2, help="failing steps in a row before a search stops")
    p.add_argument("--p99-ms", type=float, default=100.0)
    p.add_argument("--max-loss", type=float, default=0.05)
    p.add_argument("--images", type=Path, default=None)
    p.add_argument("--spectators", type=int, default=1000)
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--moves-per-s", type=float, default=4.0)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    args.server_env = dict(item.split("=", 1) for item in args.env)
    tag = stamp()
    out: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with redis_server() as redis_url:
        if args.only in (None, "players"):
            single = capacity("single", args, tag, None)
            workers = capacity("workers", args, tag, redis_url)
            s, w = single["best"], workers["best"]
            out["players"] = {"single": single, "workers": workers, "summary": {
                "single_max_players": s and s["players"], "workers_max_players": w and w["players"],
                "ratio_players": round(w["players"] / s["players"], 2) if s and w else None,
            }}
            print("players:", out["players"]["summary"], flush=True)
        if args.only in (None, "spectators"):
            single = spectators_run("single", args, tag, None)
            cluster = spectators_run("cluster", args, tag, redis_url)
            out["spectators"] = {"single": single, "cluster": cluster}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"scaleout-{tag}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
