"""Close-ups through the `POST /predict` code path, with and without the padded retry.

For every labelled photo in `../shared/data/images/gestures/` (and its mirror image, the other hand)
three pictures are tried: the photo as it is, and two close-ups cut from it around the hand's own
landmarks (a tight crop with 5 % margin, and one that cuts into the hand's outline by 5 %), i.e.
a hand that fills the frame. Each picture goes through the same function `/predict` runs
(`stream.web.predict._recognise`) once with `GM_PREDICT_PAD` empty (no retry) and once with the default,
and is counted right (the photo's label), wrong (another gesture or `no_gesture`) or no hand.

    .venv/bin/python -m benchmarks.closeups [--json benchmarks/results/closeups.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from model.classifier import load_classifier
from model.landmarks import HandTracker
from model.schemes import counting_table
from stream.loadtest.frames import default_images_dir
from stream.settings import Settings
from stream.web.predict import StaticTrackerPool, _recognise


def _photos() -> Path:
    images = default_images_dir()
    if images is None:
        raise SystemExit("no ../shared/data/images (set GM_SHARED_DIR)")
    return images / "gestures"


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _crop(rgb: np.ndarray, xy: np.ndarray, margin: float) -> np.ndarray:
    """The hand's landmark box grown (or shrunk, margin < 0) by `margin` of its size, kept in frame."""
    h, w = rgb.shape[:2]
    px = xy * np.array([w, h])
    (x0, y0), (x1, y1) = px.min(axis=0), px.max(axis=0)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, x1 = int(max(0, x0 - mx)), int(min(w, x1 + mx))
    y0, y1 = int(max(0, y0 - my)), int(min(h, y1 + my))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


def pictures(tracker: HandTracker) -> Iterator[tuple[str, str, np.ndarray]]:
    """(label, kind, rgb) for every photo, its mirror, and their close-ups."""
    for path in sorted(_photos().glob("*.jpg")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        for side, img in (("", rgb), (" mirrored", np.ascontiguousarray(rgb[:, ::-1]))):
            yield path.stem, "photo" + side, img
            hand = tracker.detect(img)
            if hand is None:
                continue
            yield path.stem, "tight crop" + side, _crop(img, hand.normalized[:, :2], 0.05)
            yield path.stem, "cut crop" + side, _crop(img, hand.normalized[:, :2], -0.05)


def run() -> dict[str, object]:
    classifier = load_classifier(None)
    counting = counting_table(Settings().counting_map)
    results: dict[str, Counter[str]] = {}
    with HandTracker(static_image_mode=True) as finder:
        items = list(pictures(finder))
    for pad in ((), Settings().predict_pad):
        settings = Settings(predict_pad=pad, model_complexity=0)
        pool = StaticTrackerPool(lambda: HandTracker(model_complexity=0, static_image_mode=True))
        for label, kind, rgb in items:
            result = _recognise(_jpeg(rgb), settings, pool, lambda: classifier, "counting", counting)
            verdict = "no hand" if not result.hand else ("right" if result.gesture == label else "wrong")
            group = "close-ups" if "crop" in kind else "photos"
            results.setdefault(f"{group} | pad={','.join(map(str, pad)) or 'none'}", Counter())[verdict] += 1
        pool.close()
    return {k: dict(v) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    table = run()
    for key, counts in table.items():
        total = sum(counts.values())
        print(f"{key:<32} right {counts.get('right', 0):>3}  wrong {counts.get('wrong', 0):>3}  "
              f"no hand {counts.get('no hand', 0):>3}  (of {total})")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
