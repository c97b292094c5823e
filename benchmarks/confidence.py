"""What the served confidence and the `no_gesture` answer mean: two model directories side by side.

For each model (default: the shipped `model/default/` and, with `--previous DIR`, another model
directory, e.g. the previous default exported with `git archive <rev> model/default | tar -x -C DIR`),
through `GestureClassifier.predict` (the served answer and confidence):

* on true gestures of people never trained on (`data/heldout/`, HaGRID test people; the rows of
  people whose natural hand is a `no_gesture` training row are reported apart) and, when
  `../shared` is there, the fixed test split: share answered with a gesture, and on those answers
  AUROC of the confidence for right vs wrong, accuracy of the 80 % most confident, ECE, Brier score
  with its reliability / resolution / uncertainty terms, median confidence of right and wrong;
* natural hands of people never trained on (`data/natural/`, the test quarter of its people) and the
  recorded negatives' reporting half: share answered `no_gesture`;
* single-sample latency (p50/p95, `single_sample_latency`, run it pinned: `taskset -c 0`).

    OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python -m benchmarks.confidence \\
        [--previous /tmp/prev/model/default] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from model.classifier import GestureClassifier, load_classifier
from model.datasets import read_landmark_csv
from model.evaluation import single_sample_latency
from model.features import features_from_xy
from model.openset import NO_GESTURE
from model.train import (
    DEFAULT_HELDOUT_DIR,
    DEFAULT_NATURAL_DIR,
    DEFAULT_NEGATIVES_DIR,
    NaturalHands,
    Negatives,
    served_quality,
)

LANDMARKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "landmarks" / "landmarks_kp42.csv"


def sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if LANDMARKS.exists():
        from model.train import load_split_data

        args = argparse.Namespace(data=[str(LANDMARKS)], train_only=None, no_train_only=False)
        loaded = load_split_data(args, verbose=False)
        out["test_split"] = (loaded.data.X[loaded.split.test], loaded.data.y[loaded.split.test])
    held = read_landmark_csv(DEFAULT_HELDOUT_DIR / "hagrid_test_gestures_kp42.csv")
    natural_path = DEFAULT_NATURAL_DIR / "hagrid_no_gesture_kp42.csv"
    natural, split = read_landmark_csv(natural_path), NaturalHands.read([natural_path])
    assert split is not None
    trained = sorted(set(natural.sources[split.part != "test"].tolist()))
    new = ~np.isin(held.sources, trained)
    X_held = features_from_xy(held.xy)
    out["heldout_people"] = (X_held, held.labels)
    out["heldout_people_strict"] = (X_held[new], held.labels[new])
    return out


def measure(clf: GestureClassifier, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name, (X, y) in data.items():
        q = served_quality(clf, X, y)
        q.pop("risk_coverage")
        report[name] = q
    natural = NaturalHands.read(sorted(DEFAULT_NATURAL_DIR.glob("*.csv")))
    if natural is not None:
        answers = [clf.predict(x).gesture for x in natural.rows("test")]
        report["natural_test_people_rejected"] = float(np.mean(np.array(answers) == NO_GESTURE))
    negatives = Negatives.read(sorted(DEFAULT_NEGATIVES_DIR.glob("*.csv")))
    if negatives is not None:
        answers = [clf.predict(x).gesture for x in negatives.test]
        report["negatives_rejected"] = float(np.mean(np.array(answers) == NO_GESTURE))
    X = data["heldout_people"][0]
    lat = single_sample_latency(clf.predict, X, n=1000)
    report["latency_p50_ms"], report["latency_p95_ms"] = lat.p50_ms, lat.p95_ms
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model directory (default: the shipped model/default)")
    p.add_argument("--previous", default=None, help="another model directory to compare with")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    data = sets()
    models = {"shipped": load_classifier(args.model)}
    if args.previous:
        models["previous"] = load_classifier(args.previous)
    result = {name: measure(clf, data) for name, clf in models.items()}
    for name, report in result.items():
        print(f"== {name}")
        for k, v in report.items():
            if isinstance(v, dict):
                print(f"  {k:22} accepted {v['gestures_accepted']:.3f} acc {v['accuracy']:.4f} "
                      f"AUROC {v['auroc']:.3f} acc@80% {v['accuracy_at_80_coverage']:.4f} ECE {v['ece']:.3f} "
                      f"Brier {v['brier']:.4f} res {v['resolution']:.4f} median right "
                      f"{v['median_confidence_right']:.3f} wrong {v['median_confidence_wrong']:.3f}")
            else:
                print(f"  {k:22} {v:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
