"""Shared helpers for the benchmarks: a server subprocess, a load-test subprocess, machine load.

Every benchmark starts its own fresh server (`gesture-maze serve --port P`) so runs don't share warm
caches or leftover sessions, and runs the load-test tool as a separate process (as a user would), so
the JSON it writes is exactly what `gesture-maze loadtest --json` gives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# Limits meant for the open internet would stop a benchmark that opens many sessions from one address.
BENCH_ENV = {
    "GM_SESSION_CREATE_PER_MIN": "100000",
    "GM_MAX_CONNECTIONS_PER_IP": "100000",
    "GM_MAX_SOCKETS_PER_IP": "0",
    "GM_MAX_SESSIONS_PER_IP": "0",
    # Every load-test player comes from 127.0.0.1: the per-address caps of a public server are off.
    "GM_MAX_TRACKERS_PER_IP": "0",
    "GM_WS_JOINS_PER_10S": "0",
    "GM_WS_JOINS_PER_S": "0",
    "GM_API_READS_PER_10S": "0",
    "GM_MAX_SESSIONS": "10000",
    "GM_LOG_LEVEL": "warning",
    "GM_MODEL_POLL_S": "0",
}


def gesture_maze_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("gesture-maze")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("gesture-maze")
    return [found] if found else [sys.executable, "-m", "stream.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def server(
    name: str, env: Mapping[str, str] | None = None, timeout: float = 90.0, args: Sequence[str] = ()
) -> Iterator[Server]:
    """A fresh `gesture-maze serve` on a free loopback port; stopped (SIGTERM, then SIGKILL) on exit."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = RESULTS / f"server-{name}.log"
    full_env = {**os.environ, **BENCH_ENV, "GM_HOST": "127.0.0.1", "GM_PORT": str(port), **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*gesture_maze_cmd(), "serve", "--port", str(port), *args],
            cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    srv = Server(process, port, log)
    try:
        _wait_healthy(srv, timeout)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_healthy(srv: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.process.poll() is not None:
            raise RuntimeError(f"server exited with {srv.process.returncode}; see {srv.log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{srv.url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"server not healthy after {timeout} s; see {srv.log}")


def run_loadtest(url: str, json_path: Path, args: Sequence[str]) -> dict[str, Any]:
    """`gesture-maze loadtest --url URL --json FILE ARGS...`; returns the JSON report plus machine load."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    command = [*gesture_maze_cmd(), "loadtest", "--url", url, "--json", str(json_path), "--no-progress",
               *args]
    load_before = os.getloadavg()[0]
    cpu_before = psutil.cpu_times()
    started = time.monotonic()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    cpu_after = psutil.cpu_times()
    if completed.returncode != 0 or not json_path.exists():
        raise RuntimeError(f"loadtest failed ({completed.returncode}): {completed.stderr[-2000:]}")
    report = json.loads(json_path.read_text())
    busy = (_busy(cpu_after) - _busy(cpu_before)) / wall  # cores busy machine-wide during the run
    server_cores = report["server"]["cpu_cores"] or 0.0
    client_cores = (report["client_cpu_seconds"] or 0.0) / wall
    report["machine"] = {
        "loadavg_1m_before": round(load_before, 2),
        "busy_cores": round(busy, 2),
        "other_cores": round(max(0.0, busy - server_cores - client_cores), 2),
        "client_cores": round(client_cores, 2),
        "cores": psutil.cpu_count(),
    }
    report["command"] = " ".join(["gesture-maze", "loadtest", *command[command.index("loadtest") + 1:]])
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _busy(times: Any) -> float:
    return sum(getattr(times, f) for f in ("user", "nice", "system", "irq", "softirq", "steal")
               if hasattr(times, f))


def delivered_ratio(report: Mapping[str, Any]) -> float:
    """Frames answered / frames due (ticks after warm-up): server drops, client skips and lag all count."""
    ticks = report["frames"]["ticks"]
    return report["frames"]["processed"] / ticks if ticks else 0.0


def within_bounds(report: Mapping[str, Any], p99_ms: float = 100.0, max_loss: float = 0.05) -> bool:
    p99 = report["frame_latency_ms"]["p99"]
    return (
        p99 is not None
        and p99 < p99_ms
        and report["drop_ratio"] < max_loss
        and delivered_ratio(report) >= 1.0 - max_loss
        and report["error_count"] == 0
    )


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
