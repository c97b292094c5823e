"""`gesture-maze loadtest`: argument parsing, safety bounds, output (table on stdout, optional JSON)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from stream.loadtest.frames import FrameSource, FrameSourceError, default_images_dir
from stream.loadtest.runner import MODES, RunConfig, run
from stream.loadtest.stats import check_failures, format_table

DEFAULT_URL = "http://127.0.0.1:8000"
# Bounds keep a mistyped command from turning the tool into a flood.
MAX_PLAYERS = 500
MAX_DURATION_S = 3600.0
MAX_FPS = 60.0
MAX_SPECTATORS = 100


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gesture-maze loadtest",
        description="Simulate players (real JPEG frames over the play WebSocket) and spectators against a "
        "Gesture Maze server, then report latency percentiles, drops, throughput and server CPU/memory.",
    )
    p.add_argument("--url", default=DEFAULT_URL, help=f"server base URL (default {DEFAULT_URL}; loopback "
                   "unless given explicitly)")
    p.add_argument("--players", type=int, default=4, help="simulated players, one session each (default 4)")
    p.add_argument("--fps", type=float, default=15.0, help="frames per second per player (default 15)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of streaming after ramp-up "
                   "(default 20)")
    p.add_argument("--spectators", type=int, default=0, help="spectators per session (default 0)")
    p.add_argument("--ramp-up", type=float, default=2.0, help="seconds over which players join (default 2)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds at each player's start left out of "
                   "the statistics (model warm-up; default 1)")
    p.add_argument("--max-in-flight", type=int, default=2, help="unanswered frames a player allows, like the "
                   "web client (default 2)")
    p.add_argument("--frame-timeout", type=float, default=2.0, help="seconds after which an unanswered frame "
                   "counts as lost (default 2)")
    p.add_argument("--mode", choices=MODES, default="ws", help="ws: the real protocol (default); edge: the "
                   "same with each frame's landmarks (found here once) instead of the JPEG; predict: the "
                   "seed's one POST /predict per frame, sequential (benchmark baseline)")
    p.add_argument("--width", type=int, default=320, help="frame width in pixels (default 320)")
    p.add_argument("--height", type=int, default=240, help="frame height in pixels (default 240)")
    p.add_argument("--quality", type=int, default=70, help="JPEG quality 1-100 (default 70)")
    p.add_argument("--images", type=Path, default=None, help="folder with <gesture>.jpg photos (or a "
                   "gestures/ subfolder); default ../shared/data/images when present, else the photos "
                   "bundled with the package")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--check", action="store_true", help="exit 1 if the run saw errors, a player got no "
                   "frame replies or a spectator got no state")
    return p


def _validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not 1 <= args.players <= MAX_PLAYERS:
        parser.error(f"--players must be within 1..{MAX_PLAYERS}")
    if not 0 < args.fps <= MAX_FPS:
        parser.error(f"--fps must be within (0, {MAX_FPS:g}]")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be within (0, {MAX_DURATION_S:g}] seconds")
    if not 0 <= args.spectators <= MAX_SPECTATORS:
        parser.error(f"--spectators must be within 0..{MAX_SPECTATORS}")
    if args.ramp_up < 0 or args.warmup < 0 or args.frame_timeout <= 0 or args.max_in_flight < 1:
        parser.error("--ramp-up/--warmup must be >= 0, --frame-timeout > 0, --max-in-flight >= 1")
    if not 1 <= args.quality <= 100 or args.width < 16 or args.height < 16:
        parser.error("--quality must be within 1..100 and --width/--height at least 16")
    parts = urlsplit(args.url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        parser.error("--url must look like http://HOST:PORT")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    _validate(args, parser)
    images = args.images or default_images_dir()
    try:
        source = FrameSource.from_photos(images, width=args.width, height=args.height, quality=args.quality,
                                         variants=max(15, int(args.fps)))
    except FrameSourceError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    if args.mode == "edge":
        source = source.as_landmarks()
    shown = ", ".join(step.gesture for step in source.schedule)
    print(f"loadtest: frames from {images} ({shown})", file=sys.stderr)
    if not is_loopback(args.url):
        print(f"loadtest: targeting {args.url} (given explicitly)", file=sys.stderr)
    config = RunConfig(
        url=args.url,
        mode=args.mode,
        players=args.players,
        fps=args.fps,
        duration_s=args.duration,
        spectators=args.spectators,
        ramp_up_s=args.ramp_up,
        warmup_s=args.warmup,
        max_in_flight=args.max_in_flight,
        frame_timeout_s=args.frame_timeout,
        width=args.width,
        height=args.height,
        quality=args.quality,
        images_dir=images,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    report = asyncio.run(run(config, source))
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if args.check:
        problems = check_failures(report)
        if problems:
            print("loadtest --check failed: " + "; ".join(problems), file=sys.stderr)
            return 1
    return 0
