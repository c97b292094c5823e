"""Per-stage cost of one frame by direct model calls, and the machine's limit (cores / per-frame cost).

Runs the real `model.recognizer.Recognizer` over the load-test's frame pool in stream order (the
gesture schedule at 15 fps) for each configuration: the server's (tracking, full model), the seed
baseline's (static image mode: palm detection on every frame) and the lite model. Reports mean/p50/p95
of each stage (decode, landmarks, classify, total), process CPU seconds per frame (MediaPipe runs
its own threads, so wall time per frame and CPU per frame differ), and the limit this implies for
this machine: cores / CPU-per-frame frames/s, i.e. that / 15 players at 15 fps.

    .venv/bin/python -m benchmarks.stages
    .venv/bin/python -m benchmarks.stages --frames 300 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import RESULTS, stamp
from model.recognizer import Recognizer, RecognizerConfig
from stream.loadtest.frames import FrameSource, default_images_dir
from stream.loadtest.stats import percentile

CONFIGS = {
    "server (tracking, full)": {"static_image_mode": False, "model_complexity": 1},
    "seed baseline (static, full)": {"static_image_mode": True, "model_complexity": 1},
    "tracking, lite": {"static_image_mode": False, "model_complexity": 0},
}


def _classifier_source():
    from model.classifier import load_classifier

    classifier = load_classifier(os.environ.get("GESTURE_MODEL_URI"))  # as the server: default model if unset
    return lambda: classifier


def stream_frames(source: FrameSource, count: int, fps: float) -> list[bytes]:
    return [source.frame(source.gesture_at(i / fps), i) for i in range(count)]


def measure(
    frames: Sequence[bytes], config: dict[str, Any], classifier_source: Any, fps: float
) -> dict[str, Any]:
    recognizer = Recognizer(classifier_source, RecognizerConfig(**config))
    for i, frame in enumerate(frames[:10]):  # warm-up: graph creation, first inference
        recognizer.process(frame, i / fps)
    stages: dict[str, list[float]] = {}
    hands = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i, frame in enumerate(frames):
        result = recognizer.process(frame, 100.0 + i / fps)
        hands += result.hand
        for name, ms in result.stages_ms.items():
            stages.setdefault(name, []).append(ms)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    recognizer.close()
    n = len(frames)
    return {
        "frames": n,
        "hand_ratio": round(hands / n, 3),
        "stages_ms": {name: {"mean": round(sum(v) / len(v), 3), "p50": round(percentile(v, 50), 3),
                             "p95": round(percentile(v, 95), 3)} for name, v in stages.items()},
        "wall_ms_per_frame": round(wall / n * 1000, 3),
        "cpu_ms_per_frame": round(cpu / n * 1000, 3),
    }


def parallel(frames: Sequence[bytes], config: dict[str, Any], classifier_source: Any, threads: int,
             fps: float) -> dict[str, Any]:
    """`threads` streams at once (one Recognizer each, like the server's pool): aggregate frames/s."""
    recognizers = [Recognizer(classifier_source, RecognizerConfig(**config)) for _ in range(threads)]
    for r in recognizers:
        for i, frame in enumerate(frames[:10]):
            r.process(frame, i / fps)

    def work(r: Recognizer) -> None:
        for i, frame in enumerate(frames):
            r.process(frame, 100.0 + i / fps)

    workers = [threading.Thread(target=work, args=(r,)) for r in recognizers]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    for r in recognizers:
        r.close()
    total = len(frames) * threads
    return {"threads": threads, "frames_per_s": round(total / wall, 1),
            "cpu_ms_per_frame": round(cpu / total * 1000, 3), "cores_used": round(cpu / wall, 2)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--quality", type=int, default=70)
    args = p.parse_args(argv)
    images = default_images_dir()
    source = FrameSource.from_photos(images, width=args.width, height=args.height, quality=args.quality)
    frames = stream_frames(source, args.frames, args.fps)
    classifier_source = _classifier_source()
    cores = os.cpu_count() or 1
    results: dict[str, Any] = {"cores": cores, "loadavg_1m": round(os.getloadavg()[0], 2), "configs": {},
                               "images": str(images), "frames": args.frames, "threads": args.threads}
    for name, config in CONFIGS.items():
        single = measure(frames, config, classifier_source, args.fps)
        multi = parallel(frames, config, classifier_source, args.threads, args.fps)
        limit_fps = cores / (single["cpu_ms_per_frame"] / 1000.0)
        results["configs"][name] = single | {
            "parallel": multi,
            "limit_fps": round(limit_fps, 1),
            "limit_players_at_15fps": round(limit_fps / 15.0, 1),
        }
        s = single["stages_ms"]
        print(f"{name:<30} decode {s['decode']['mean']:.2f}  landmarks {s['landmarks']['mean']:.2f}  "
              f"classify {s['classify']['mean']:.2f}  total {s['total']['mean']:.2f} ms "
              f"(p95 {s['total']['p95']:.2f})  "
              f"cpu {single['cpu_ms_per_frame']:.2f} ms/frame  hands {single['hand_ratio']:.2f}  -> limit "
              f"{limit_fps:.0f} fps = {limit_fps / 15:.1f} players@15  | {args.threads} threads: "
              f"{multi['frames_per_s']} fps on {multi['cores_used']} cores", flush=True)
    server_cfg = results["configs"]["server (tracking, full)"]
    base_cfg = results["configs"]["seed baseline (static, full)"]
    results["ratio_cpu_per_frame_baseline_over_server"] = round(
        base_cfg["cpu_ms_per_frame"] / server_cfg["cpu_ms_per_frame"], 2
    )
    print(f"baseline/server CPU per frame: {results['ratio_cpu_per_frame_baseline_over_server']}x  "
          f"(load average at start {results['loadavg_1m']})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"stages-{stamp()}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
