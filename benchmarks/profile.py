"""Where the server's time goes under load: py-spy on a `gesture-maze serve` subprocess.

Starts a fresh server, drives it with `gesture-maze loadtest` (N players at F fps), and meanwhile
samples every server thread with `py-spy record` (a flame graph SVG and collapsed stacks). The
collapsed stacks are then summarised: share of samples by leaf function (self time) and by
category (MediaPipe inference, JPEG decode, frame statistics, classifier, JSON, WebSocket I/O, ...).

    .venv/bin/python -m benchmarks.profile --players 16 --fps 15 --duration 30
    .venv/bin/python -m benchmarks.profile --players 16 --fps 15 --duration 30 --gil   # who holds the GIL
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, run_loadtest, server, stamp

# First matching substring of a stack (leaf first) decides the category.
CATEGORIES = (
    ("mediapipe inference", ("solution_base.py", "mediapipe")),
    ("jpeg decode", ("imdecode", "decode_jpeg")),
    ("frame statistics", ("frame_stats",)),
    ("features + classifier", ("features.py", "classifier.py", "sklearn", "skops")),
    ("smoothing + schemes", ("smoothing.py", "schemes.py")),
    ("json", ("json/",)),
    ("websocket / http io", ("websockets", "uvicorn", "h11", "httptools", "starlette")),
    ("asyncio loop", ("asyncio",)),
    ("thread pool idle", ("thread.py", "threading.py")),
)


def py_spy() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else (shutil.which("py-spy") or "py-spy")


def categorise(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return "other"


def summarise(collapsed: Path, top: int = 15) -> dict[str, Any]:
    by_leaf: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        by_leaf[stack.split(";")[-1]] += n
        by_category[categorise(stack)] += n
    share = lambda c: [(k, round(v / total * 100, 1)) for k, v in c.most_common(top)]  # noqa: E731
    return {"samples": total, "by_category_pct": share(by_category), "by_leaf_pct": share(by_leaf)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--players", type=int, default=16)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--mode", default="ws", choices=("ws", "edge", "predict"))
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--delay", type=float, default=6.0, help="seconds before sampling starts")
    p.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)")
    args = p.parse_args(argv)
    tag = f"{stamp()}-{args.mode}-{args.players}{'-gil' if args.gil else ''}"
    svg, raw = RESULTS / f"profile-{tag}.svg", RESULTS / f"profile-{tag}.txt"
    with server(f"profile-{tag}") as srv:
        result: dict[str, Any] = {}
        load = threading.Thread(target=lambda: result.update(report=run_loadtest(
            srv.url, RESULTS / f"profile-{tag}-loadtest.json",
            ["--mode", args.mode, "--players", str(args.players), "--fps", str(args.fps),
             "--duration", str(args.duration), "--ramp-up", "2"])))
        load.start()
        # py-spy cannot render a flame graph from collapsed stacks, so the steady part of the run is split:
        # collapsed stacks (for the summary below) first, then the SVG flame graph.
        # Start after ramp-up and warm-up: the first session imports mediapipe and every session builds its
        # graph on its first frame, one-off costs that would dominate a short profile.
        time.sleep(args.delay)
        record_s = max(3, int((args.duration + 2 - args.delay - 1) / 2))
        common = [py_spy(), "record", "--pid", str(srv.pid), "--duration", str(record_s), "--rate",
                  str(args.rate), "--nonblocking", *(["--gil"] if args.gil else [])]
        subprocess.run([*common, "--format", "raw", "-o", str(raw)], check=False, capture_output=True)
        dump = subprocess.run([py_spy(), "dump", "--pid", str(srv.pid), "--nonblocking"], capture_output=True,
                              text=True, check=False)
        subprocess.run([*common, "-o", str(svg)], check=False, capture_output=True)
        load.join()
    if not raw.exists():
        print("py-spy produced nothing (ptrace not allowed? needs SYS_PTRACE)", file=sys.stderr)
        return 1
    summary = summarise(raw)
    report = result.get("report", {})
    out = RESULTS / f"profile-{tag}.json"
    out.write_text(json.dumps({"summary": summary, "dump": dump.stdout, "loadtest": report}, indent=2) + "\n")
    print(f"{summary['samples']} samples over {record_s} s, {args.players} players at {args.fps:g} fps "
          f"(p99 {report.get('frame_latency_ms', {}).get('p99')} ms, server "
          f"{report.get('server', {}).get('cpu_cores')} cores)")
    print("by category (% of samples, all threads incl. idle waits):")
    for name, pct in summary["by_category_pct"]:
        print(f"  {pct:5.1f}%  {name}")
    print("by leaf function:")
    for name, pct in summary["by_leaf_pct"]:
        print(f"  {pct:5.1f}%  {name}")
    print(f"collapsed stacks: {raw}\nflame graph: {svg}\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
