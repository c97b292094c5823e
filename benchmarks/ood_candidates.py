"""Which out-of-distribution score tells a non-gesture hand from a gesture? Candidates compared.

Known gestures: the validation split of `../shared/data/landmarks/landmarks_kp42.csv`. Non-gestures:
every row of `data/negatives/*.csv` (real hands in other poses, see data/negatives/SOURCES.md). The
classifier (SVM rbf C=300; only the max-probability row depends on it) is fitted on the training
split + mirrors. For each score: AUROC (1.0 = perfect separation) and the share of non-gestures
rejected when the threshold keeps 95 % / 98 % of the true gestures; per shape of the negatives at
95 %. A trained reject class is scored leave-one-shape-out (trained with the other recorded shapes
as `no_gesture`, tested on the one left out; shapes are the recorders' labels), because what
matters is a pose nobody recorded as a negative.

    .venv/bin/python -m benchmarks.ood_candidates [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from model.classifier import GestureClassifier, ModelInfo
from model.datasets import read_datasets
from model.estimators import Candidate, build
from model.features import FEATURE_VERSION, features_from_xy, mirror_xy
from model.openset import OpenSetHead, fit_temperature, softmax
from model.splits import prepare, split, with_mirrored
from model.train import DEFAULT_NEGATIVES_DIR
from stream.loadtest.frames import default_images_dir

CANDIDATE = Candidate("svm_rbf", {"C": 300, "gamma": "scale"})


def _negatives() -> tuple[np.ndarray, np.ndarray]:
    xy, letters = [], []
    for path in sorted(DEFAULT_NEGATIVES_DIR.glob("*.csv")):
        ds = read_datasets([path])
        with path.open(newline="", encoding="utf-8") as handle:
            letters += [row["orig_label"] for row in csv.DictReader(handle)]
        xy.append(ds.xy)
    return np.concatenate(xy), np.array(letters)


def _row(known: np.ndarray, neg: np.ndarray, letters: np.ndarray) -> dict[str, object]:
    at95, at98 = np.quantile(known, 0.95), np.quantile(known, 0.98)
    return {
        "auroc": float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(neg))], np.r_[known, neg])),
        "rejected_at_95": float(np.mean(neg > at95)),
        "rejected_at_98": float(np.mean(neg > at98)),
        "per_letter_at_95": {str(k): round(float(np.mean(neg[letters == k] > at95)), 3)
                             for k in sorted(set(letters.tolist()))},
    }


def run() -> dict[str, object]:
    images = default_images_dir()
    if images is None:
        raise SystemExit("no ../shared/data (set GM_SHARED_DIR)")
    d = prepare(read_datasets([images.parent / "landmarks" / "landmarks_kp42.csv"]))
    s = split(d.y)
    neg_xy, letters = _negatives()
    X_neg = features_from_xy(neg_xy)
    X_tr, y_tr = with_mirrored(d, s.train)
    model = build(CANDIDATE).fit(X_tr, y_tr)
    clf = GestureClassifier(model, ModelInfo("ood", "bench", None, "benchmark", FEATURE_VERSION))
    Z_tr, Z_val, Z_neg = clf.scaled(X_tr), clf.scaled(d.X[s.val]), clf.scaled(X_neg)
    beta = fit_temperature(clf.class_scores(d.X[s.val]), np.searchsorted(clf.classes, d.y[s.val]))
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scores["1 - max probability (calibrated)"] = tuple(  # type: ignore[assignment]
        1.0 - softmax(clf.class_scores(X), beta).max(axis=1) for X in (d.X[s.val], X_neg))
    means = np.stack([Z_tr[y_tr == c].mean(axis=0) for c in clf.classes])
    cov = LedoitWolf().fit(Z_tr - means[np.searchsorted(clf.classes, y_tr)]).covariance_
    inv = np.linalg.inv(cov)

    def mahalanobis(Z: np.ndarray) -> np.ndarray:
        diff = Z[:, None, :] - means[None]
        return np.sqrt(np.einsum("nci,ij,ncj->nc", diff, inv, diff)).min(axis=1)

    scores["Mahalanobis to the nearest class mean (tied covariance)"] = (
        mahalanobis(Z_val), mahalanobis(Z_neg))
    for k in (1, 5):
        nn = NearestNeighbors(n_neighbors=k).fit(Z_tr)
        scores[f"distance to the {k}-th nearest training row (all features)"] = (
            nn.kneighbors(Z_val)[0][:, -1], nn.kneighbors(Z_neg)[0][:, -1])
    sv = NearestNeighbors(n_neighbors=1).fit(model[-1].support_vectors_)
    scores["distance to the nearest support vector"] = (
        sv.kneighbors(Z_val)[0][:, 0], sv.kneighbors(Z_neg)[0][:, 0])
    head = OpenSetHead.fit_reference(Z_tr)
    scores["distance to the nearest training row, PCA-16 (shipped)"] = (
        head.ood_scores(Z_val), head.ood_scores(Z_neg))
    table = {name: _row(known, neg, letters) for name, (known, neg) in scores.items()}

    # A trained reject class, leave-one-letter-out.
    X_neg_m = features_from_xy(mirror_xy(neg_xy))
    held_out: dict[str, float] = {}
    for letter in sorted(set(letters.tolist())):
        train = letters != letter
        X = np.vstack([X_tr, X_neg[train], X_neg_m[train]])
        y = np.r_[y_tr, np.full(2 * int(train.sum()), "no_gesture")]
        reject = build(CANDIDATE).fit(X, y)
        held_out[letter] = float(np.mean(reject.predict(X_neg[~train]) == "no_gesture"))
    table["trained reject class (held-out letter rejected)"] = {"per_letter": held_out}
    for name, row in table.items():
        print(f"{name:<58} " + json.dumps(row))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    table = run()
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
