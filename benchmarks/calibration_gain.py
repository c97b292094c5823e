"""Per-player calibration gain on held-out people (leave-one-source-out).

For every source (one person's or one project's recordings) with at least 100 rows of classes other
sources also have: train the default model family on every *other* source plus the train-only rows of
`data/gestures/` (augmented as `gesture-maze train` does: mirrors and rotated copies;
`--no-train-only` leaves the train-only rows out), then play that
source's person calibrating: `--per-class` random rows of each of their gestures are their
calibration samples (`model.personal.PlayerProfile`), the rest is their test set. Accuracy on
that test set without and with the player's adapter, for several neighbour radii, pooled over sources
of each kind: `keypoint_csv` sources are one person's (or one small project's) recordings, i.e. a
player; `hagrid_svm_support_vectors` sources are boundary rows of many different people, where a
"player" calibration is meaningless (reported for completeness).

    .venv/bin/python -m benchmarks.calibration_gain [--per-class 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from model.classifier import GestureClassifier, ModelInfo, default_model_dir
from model.estimators import Candidate, build
from model.features import FEATURE_VERSION
from model.personal import PlayerProfile
from model.splits import DEFAULT_AUGMENTATION, Prepared, augmented
from model.train import load_split_data, parse_candidate
from stream.loadtest.frames import default_images_dir

RADII = (2.0, 3.0, 4.0, 6.0, 8.0, float("inf"))


def shipped_candidate() -> str:
    """`model/default/metadata.json`'s model name, `family(k=v,...)`, as `family:k=v,...`."""
    name = json.loads((default_model_dir() / "metadata.json").read_text())["model"]
    return name.replace("(", ":", 1).rstrip(")")


def _landmarks_csv() -> Path:
    images = default_images_dir()
    if images is None:
        raise SystemExit("no ../shared/data (set GM_SHARED_DIR)")
    return images.parent / "landmarks" / "landmarks_kp42.csv"


def source_kinds(path: Path) -> dict[str, str]:
    """source -> kind (the kp42 file's `kind` column)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["source"]: row["kind"] for row in csv.DictReader(handle)}


def pooled_by_kind(
    per_source: dict[str, dict[str, float]], kinds: dict[str, str]
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind in sorted(set(kinds.values())):
        members = [r for s, r in per_source.items() if kinds.get(s) == kind]
        rows = sum(r["rows"] for r in members)
        if rows:
            keys = [k for k in members[0] if k != "rows"]
            out[kind] = {"rows": rows, **{k: sum(r[k] * r["rows"] for r in members) / rows for k in keys}}
    return out


def _data(train_only: bool) -> Prepared:
    """The shared rows, plus (read as `gesture-maze train` reads them) the train-only rows of
    `data/gestures/`, which are in every fold's training set and never held out."""
    args = argparse.Namespace(data=[_landmarks_csv()], train_only=None, no_train_only=not train_only)
    return load_split_data(args, verbose=False).data


def run(candidate: Candidate, per_class: int, seed: int = 0, train_only: bool = True) -> dict[str, object]:
    d = _data(train_only)
    rng = np.random.default_rng(seed)
    per_source: dict[str, dict[str, float]] = {}
    hits: dict[str, int] = {"global": 0, **{f"r={r}": 0 for r in RADII}}
    total = 0
    for source in d.split_sources:
        held = d.sources == source
        rows = np.flatnonzero(held & np.isin(d.y, sorted(set(d.y[~held].tolist()))))
        if len(rows) < 100:
            continue
        model = build(candidate).fit(*augmented(d, np.flatnonzero(~held), DEFAULT_AUGMENTATION))
        clf = GestureClassifier(model, ModelInfo("loso", source, None, "benchmark", FEATURE_VERSION))
        calib, test = [], []
        for label in sorted(set(d.y[rows].tolist())):
            mine = rng.permutation(rows[d.y[rows] == label])
            calib += mine[:per_class].tolist()
            test += mine[per_class:].tolist()
        profile = PlayerProfile()
        for i in calib:
            profile.add(str(d.y[i]), d.X[i])
        X_test, y_test = d.X[test], d.y[test]
        Z_test = clf.scaled(X_test)
        base = np.asarray(clf.classes)[np.argmax(clf.class_scores(X_test), axis=1)]
        result = {"rows": len(test), "global": float(np.mean(base == y_test))}
        hits["global"] += int(np.sum(base == y_test))
        for r in RADII:
            adapter = profile.adapter(clf.scaled, radius=r)
            assert adapter is not None
            votes = [adapter.vote(z) for z in Z_test]
            pred = np.array([v[0] if v is not None else b for v, b in zip(votes, base, strict=True)])
            result[f"r={r}"] = float(np.mean(pred == y_test))
            hits[f"r={r}"] += int(np.sum(pred == y_test))
        total += len(test)
        per_source[source] = result
        print(source[:50], json.dumps({k: round(v, 4) for k, v in result.items()}), flush=True)
    pooled = {k: v / total for k, v in hits.items()}
    print("pooled", json.dumps({k: round(v, 4) for k, v in pooled.items()}))
    by_kind = pooled_by_kind(per_source, source_kinds(_landmarks_csv()))
    for kind, figures in by_kind.items():
        print(f"pooled {kind}", json.dumps({k: round(v, 4) for k, v in figures.items()}))
    return {"candidate": candidate.name, "per_class": per_class, "train_only_rows": d.train_only,
            "pooled": pooled, "by_kind": by_kind,
            "per_source": per_source}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=10, help="calibration rows per gesture")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--candidate", default=None, metavar="FAMILY:K=V,...",
                        help="model family (default: the shipped default model's)")
    parser.add_argument("--no-train-only", action="store_true",
                        help="train without the train-only rows of data/gestures/")
    args = parser.parse_args()
    result = run(parse_candidate(args.candidate or shipped_candidate()), args.per_class,
                 train_only=not args.no_train_only)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
