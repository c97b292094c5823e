"""Test macro-F1 of a configuration over augmentation seeds: the spread the rotated copies add.

The final fit (train + validation, mirrors, one rotated copy per row with angles from
`Augmentation(seed=s)`, the `no_gesture` rows of `gesture-maze train`) is repeated for each seed and
scored once on the fixed test split, closed-set (argmax over the 18 gestures). Nothing is selected
by these scores; they say how far the shipped draw is from the configuration's mean.

    OPENBLAS_NUM_THREADS=1 nice -n 5 .venv/bin/python -m benchmarks.seeds [--seeds 0 1 2 3 4]
        [--candidate svm_rbf:C=30,gamma=0.001629] [--no-natural] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from model.estimators import build
from model.evaluation import score
from model.splits import Augmentation
from model.train import (
    Context,
    NaturalHands,
    Negatives,
    _predict,
    load_split_data,
    natural_paths,
    negative_paths,
    parse_candidate,
)

LANDMARKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "landmarks" / "landmarks_kp42.csv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--candidate", default="svm_rbf:C=30,gamma=0.001629")
    p.add_argument("--data", default=str(LANDMARKS))
    p.add_argument("--no-natural", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    ns = argparse.Namespace(data=[args.data], train_only=None, no_train_only=False, negatives=None,
                            no_negatives=False, natural=None, no_natural=args.no_natural)
    loaded = load_split_data(ns, verbose=False)
    data, sp = loaded.data, loaded.split
    labels = sorted(set(data.y.tolist()))
    negatives, natural = Negatives.read(negative_paths(ns)), NaturalHands.read(natural_paths(ns))
    final_idx = np.sort(np.concatenate([sp.train, sp.val]))
    cand = parse_candidate(args.candidate)
    results = {}
    for seed in args.seeds:
        ctx = Context(data, sp, labels, {}, False, negatives, Augmentation(seed=seed), natural)
        X, y, _ = ctx.fit_rows(final_idx, final=True)
        model = build(cand).fit(X, y)
        f1 = score(data.y[sp.test], _predict(model, data.X[sp.test]), labels).f1_macro
        results[seed] = f1
        print(f"seed {seed}: test macro-F1 {f1:.4f}", flush=True)
    values = np.array(list(results.values()))
    print(f"{cand.name}: mean {values.mean():.4f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.4f} "
          f"over {len(values)} seeds")
    if args.json:
        Path(args.json).write_text(json.dumps({"candidate": cand.name, "test_f1_macro": results}, indent=2))


if __name__ == "__main__":
    main()
