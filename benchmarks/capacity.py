"""Capacity: the most players at F fps each architecture sustains, and frames/s per core, vs the seed.

For each mode (`predict` = the seed's baseline: one HTTP POST /predict per frame, detection on every
frame, sequential clients, nothing dropped; `ws` = this server: play WebSocket, tracking, bounded frame
lanes that drop superseded frames) the number of players N is raised step by step, each step against a
fresh `gesture-maze serve` subprocess, until a run leaves the bounds (p99 frame latency >= 100 ms, or
>= 5% of due frames not answered, or any error). Both modes are measured in the same invocation, on the
same machine, so the ratios compare like with like.

    .venv/bin/python -m benchmarks.capacity                         # defaults: 15 fps, 15 s per step
    .venv/bin/python -m benchmarks.capacity --modes ws --start 8 --max 20
    .venv/bin/python -m benchmarks.capacity --modes ws --env GM_MODEL_COMPLEXITY=0   # lite hand model
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from benchmarks.common import RESULTS, delivered_ratio, run_loadtest, server, stamp, within_bounds


def search(mode: str, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    failures = 0
    n = args.start
    while n <= args.max:
        env = dict(args.server_env)
        if mode == "predict":
            # /predict admits only GM_WORKERS - 1 requests at once (503 server_busy beyond, to keep a worker
            # for players). The seed had no such gate and processed every request: give each client a slot.
            env.setdefault("GM_WORKERS", str(n + 1))
        with server(f"{tag}-{mode}-{n}", env=env, args=getattr(args, "server_args", ())) as srv:
            report = run_loadtest(srv.url, RESULTS / f"capacity-{tag}-{mode}-{n}.json", [
                "--mode", mode, "--players", str(n), "--fps", str(args.fps), "--duration", str(args.duration),
                "--ramp-up", str(args.ramp_up), "--spectators", str(args.spectators),
            ])
        ok = within_bounds(report, args.p99_ms, args.max_loss)
        steps.append(_row(mode, n, report, ok))
        print(_line(steps[-1]), flush=True)
        if ok:
            best = steps[-1]
            failures = 0
        else:
            failures += 1
            if failures >= args.patience:
                break
        n += args.step
    return {"mode": mode, "steps": steps, "best": best}


def _row(mode: str, n: int, report: dict[str, Any], ok: bool) -> dict[str, Any]:
    server_info = report["server"]
    return {
        "mode": mode,
        "players": n,
        "ok": ok,
        "p50_ms": report["frame_latency_ms"]["p50"],
        "p99_ms": report["frame_latency_ms"]["p99"],
        "drop_ratio": report["drop_ratio"],
        "delivered_ratio": round(delivered_ratio(report), 4),
        "throughput_fps": report["throughput_fps"],
        "processed": report["frames"]["processed"],
        "server_cores": server_info["cpu_cores"],
        "frames_per_cpu_second": server_info["frames_per_cpu_second"],
        "rss_start_mb": server_info["rss_start_mb"],
        "rss_peak_mb": server_info["rss_peak_mb"],
        "rss_per_player_mb": server_info["rss_per_player_mb"],
        "stage_mean_ms": server_info["stage_mean_ms"],
        "mean_frame_bytes": report.get("frame", {}).get("mean_bytes"),
        "move_p50_ms": report["move_latency_ms"]["p50"],
        "errors": report["errors"],
        "machine": report["machine"],
        "command": report["command"],
    }


def _line(r: dict[str, Any]) -> str:
    m = r["machine"]
    return (
        f"{r['mode']:>8} N={r['players']:<3} {'OK  ' if r['ok'] else 'FAIL'} "
        f"p50 {r['p50_ms']} p99 {r['p99_ms']} ms"
        f"  delivered {r['delivered_ratio']:.3f} dropped {r['drop_ratio']:.3f}  {r['throughput_fps']} fps  "
        f"server {r['server_cores']} cores, {r['frames_per_cpu_second']} frames/cpu-s, "
        f"rss {r['rss_peak_mb']} MB"
        f"  | client {m['client_cores']} other {m['other_cores']} cores, load {m['loadavg_1m_before']}"
        + (f"  errors {r['errors']}" if r["errors"] else "")
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios of this server (ws) against the same-run baseline (predict)."""
    ws, base = results.get("ws", {}).get("best"), results.get("predict", {}).get("best")

    def peak_efficiency(mode: str) -> float | None:  # frames per server CPU-second, best over the search
        values = [s["frames_per_cpu_second"] for s in results.get(mode, {}).get("steps", [])
                  if s["frames_per_cpu_second"]]
        return max(values) if values else None

    summary: dict[str, Any] = {
        "ws_max_players": ws and ws["players"],
        "predict_max_players": base and base["players"],
        "ws_fps_within_bounds": ws and ws["throughput_fps"],
        "predict_fps_within_bounds": base and base["throughput_fps"],
        "ws_frames_per_cpu_second": peak_efficiency("ws"),
        "predict_frames_per_cpu_second": peak_efficiency("predict"),
    }
    summary["ratio_players"] = _ratio(summary["ws_max_players"], summary["predict_max_players"])
    summary["ratio_fps_within_bounds"] = _ratio(summary["ws_fps_within_bounds"],
                                                summary["predict_fps_within_bounds"])
    summary["ratio_frames_per_core"] = _ratio(summary["ws_frames_per_cpu_second"],
                                              summary["predict_frames_per_cpu_second"])
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="predict,ws", help="comma separated: predict (baseline), ws")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per step (after ramp-up)")
    p.add_argument("--ramp-up", type=float, default=2.0)
    p.add_argument("--spectators", type=int, default=0)
    p.add_argument("--start", type=int, default=2)
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--max", type=int, default=30)
    p.add_argument("--patience", type=int, default=1, help="failing steps in a row before stopping")
    p.add_argument("--p99-ms", type=float, default=100.0)
    p.add_argument("--max-loss", type=float, default=0.05)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="server environment, e.g. --env GM_MODEL_COMPLEXITY=0 (repeatable)")
    args = p.parse_args(argv)
    args.server_env = dict(item.split("=", 1) for item in args.env)
    tag = stamp()
    results = {mode: search(mode, args, tag) for mode in args.modes.split(",")}
    summary = summarise(results)
    out = RESULTS / f"capacity-{tag}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results, "summary": summary}, indent=2) + "\n")
    print("\nsummary (ws = this server, predict = seed baseline, same run):")
    for key, value in summary.items():
        print(f"  {key:<32} {value}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
