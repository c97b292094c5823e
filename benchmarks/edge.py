"""Edge mode vs JPEG: players x F fps within p99 < 100 ms, bytes per player, the browser's own time.

In one invocation, on one machine: the capacity search of `benchmarks.capacity` for `ws` (JPEG frames,
landmarks found by the server) and `edge` (the same frames' landmarks, found once by the load-test
tool, sent as `landmarks` messages), each step against a fresh `gesture-maze serve`; the bytes each
player sends per second either way; and how long the page's own hand finder (`frontend/js/edge.js`,
MediaPipe Hands for the web) takes per frame in headless Chromium on this machine (no GPU: software
WebGL), on the reference photos as a stream.

    .venv/bin/python -m benchmarks.edge                      # both searches + the browser (~6 min)
    .venv/bin/python -m benchmarks.edge --skip-browser --edge-max 400
    .venv/bin/python -m benchmarks.edge --edge-workers 2     # + edge mode on `serve --workers 2` + Redis

Needs `gesture-maze edge-assets` for the browser part (and Debian's chromium).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.capacity import search
from benchmarks.common import REPO, RESULTS, server, stamp
from benchmarks.scaleout import redis_server

REFERENCE_PHOTOS = REPO.parent / "shared" / "data" / "images" / "gestures"


def browser_times(photos: Path, frames: int = 40) -> dict[str, Any]:
    """ms per frame of the page's hand finder in headless Chromium, each photo as a steady stream."""
    import base64

    from playwright.sync_api import sync_playwright

    images = ["data:image/jpeg;base64," + base64.b64encode(p.read_bytes()).decode()
              for p in sorted(photos.glob("*.jpg"))]
    with server("edge-browser", env={}) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{srv.url}/watch.html")
            times = page.evaluate(
                """async ([images, frames]) => {
                    const { EdgeLandmarker } = await import('/js/edge.js');
                    const landmarker = await EdgeLandmarker.load();
                    const out = [];
                    for (const src of images) {
                        const img = new Image(); img.src = src; await img.decode();
                        for (let i = 0; i < frames; i++) {
                            const t = performance.now();
                            await landmarker.read(img);
                            out.push(performance.now() - t);
                        }
                    }
                    return out;
                }""",
                [images, frames],
            )
        finally:
            browser.close()
    steady = [t for i, t in enumerate(times) if i % frames >= 5]  # the first of each photo re-detects
    ordered = sorted(steady)
    return {
        "frames": len(steady),
        "p50_ms": round(statistics.median(steady), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "renderer": "headless Chromium, software WebGL (SwiftShader), no GPU",
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per step (after ramp-up)")
    p.add_argument("--ramp-up", type=float, default=3.0)
    p.add_argument("--spectators", type=int, default=0)
    p.add_argument("--ws-start", type=int, default=10)
    p.add_argument("--ws-step", type=int, default=2)
    p.add_argument("--ws-max", type=int, default=24)
    p.add_argument("--edge-start", type=int, default=50)
    p.add_argument("--edge-step", type=int, default=25)
    p.add_argument("--edge-max", type=int, default=300)
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--p99-ms", type=float, default=100.0)
    p.add_argument("--max-loss", type=float, default=0.05)
    p.add_argument("--skip-browser", action="store_true")
    p.add_argument("--edge-workers", type=int, default=1,
                   help="also search edge mode on `serve --workers W` with a redis-server store (W > 1)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    args.server_env = dict(item.split("=", 1) for item in args.env)
    tag = stamp()
    results = {}
    for mode in ("ws", "edge"):
        args.start, args.step, args.max = (getattr(args, f"{mode}_{k}") for k in ("start", "step", "max"))
        results[mode] = search(mode, args, f"edge-{tag}")
    if args.edge_workers > 1:
        with redis_server() as url:
            single_env = args.server_env
            args.server_env = {**single_env, "GM_STORE_URL": url}
            args.server_args = ("--workers", str(args.edge_workers))
            results[f"edge_workers_{args.edge_workers}"] = search("edge", args, f"edge-{tag}-w")
            args.server_env, args.server_args = single_env, ()
    ws, edge = results["ws"]["best"], results["edge"]["best"]
    summary: dict[str, Any] = {
        "ws_max_players": ws and ws["players"],
        "edge_max_players": edge and edge["players"],
        "ratio_players": round(edge["players"] / ws["players"], 2) if ws and edge else None,
        "ws_bytes_per_player_s": _mean_bytes(results["ws"], args.fps),
        "edge_bytes_per_player_s": _mean_bytes(results["edge"], args.fps),
        "edge_workers": args.edge_workers if args.edge_workers > 1 else None,
        "edge_workers_max_players": (results.get(f"edge_workers_{args.edge_workers}") or {}).get("best", {})
        .get("players") if args.edge_workers > 1 else None,
        "edge_frames_per_cpu_second": max((s["frames_per_cpu_second"] or 0 for s in results["edge"]["steps"]),
                                          default=None),
    }
    if not args.skip_browser and REFERENCE_PHOTOS.is_dir():
        summary["browser"] = browser_times(REFERENCE_PHOTOS)
    out = RESULTS / f"edge-{tag}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results, "edge": summary}, indent=2) + "\n")
    print("\nsummary (same run):")
    for key, value in summary.items():
        print(f"  {key:<28} {value}")
    print(f"results: {out}")
    return 0


def _mean_bytes(result: dict[str, Any], fps: float) -> float | None:
    """Bytes one player sends per second: the mean message size of the best step x the frame rate."""
    best = result.get("best") or (result["steps"][-1] if result["steps"] else None)
    if best is None or not best.get("mean_frame_bytes"):
        return None
    return round(best["mean_frame_bytes"] * fps, 1)


if __name__ == "__main__":
    raise SystemExit(main())
