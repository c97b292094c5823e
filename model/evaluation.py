"""Scores for a fitted classifier: metrics, per-class F1, confusion matrix image, latency, leaderboard."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)


@dataclass
class Scores:
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    f1_weighted: float
    per_class_f1: dict[str, float]
    report: str
    confusion: np.ndarray
    labels: list[str]

    def metrics(self, prefix: str = "") -> dict[str, float]:
        out = {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}precision_macro": self.precision_macro,
            f"{prefix}recall_macro": self.recall_macro,
            f"{prefix}f1_macro": self.f1_macro,
            f"{prefix}f1_weighted": self.f1_weighted,
        }
        out.update({f"{prefix}f1_{label}": f1 for label, f1 in self.per_class_f1.items()})
        return out

    def worst(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(self.per_class_f1.items(), key=lambda kv: kv[1])[:n]

    def top_confusions(self, n: int = 5) -> list[tuple[str, str, int]]:
        """(true, predicted, count) of the largest off-diagonal cells."""
        cells = [
            (self.labels[i], self.labels[j], int(self.confusion[i, j]))
            for i in range(len(self.labels))
            for j in range(len(self.labels))
            if i != j and self.confusion[i, j] > 0
        ]
        return sorted(cells, key=lambda c: -c[2])[:n]


def score(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> Scores:
    labels = list(labels)
    kw: dict[str, Any] = {"labels": labels, "zero_division": 0}
    per_class = f1_score(y_true, y_pred, average=None, **kw)
    return Scores(
        accuracy=float(accuracy_score(y_true, y_pred)),
        precision_macro=float(precision_score(y_true, y_pred, average="macro", **kw)),
        recall_macro=float(recall_score(y_true, y_pred, average="macro", **kw)),
        f1_macro=float(f1_score(y_true, y_pred, average="macro", **kw)),
        f1_weighted=float(f1_score(y_true, y_pred, average="weighted", **kw)),
        per_class_f1={label: float(f) for label, f in zip(labels, per_class, strict=True)},
        report=classification_report(y_true, y_pred, labels=labels, digits=4, zero_division=0),
        confusion=confusion_matrix(y_true, y_pred, labels=labels),
        labels=labels,
    )


def confusion_png(scores: Scores, path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (counts written in the cells) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in threads and CI
    import matplotlib.pyplot as plt

    cm = scores.confusion.astype(float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1.0)
    n = len(scores.labels)
    fig, ax = plt.subplots(figsize=(0.55 * n + 3, 0.55 * n + 2.5), dpi=90)
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), scores.labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), scores.labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


@dataclass
class Latency:
    p50_ms: float
    p95_ms: float


def single_sample_latency(predict: Any, X: np.ndarray, n: int = 300, warmup: int = 20) -> Latency:
    """Wall time of `predict(row)` one row at a time (what the server does per frame)."""
    rows = X[np.arange(n + warmup) % len(X)]
    for row in rows[:warmup]:
        predict(row)
    times = np.empty(n)
    for k, row in enumerate(rows[warmup:]):
        t0 = time.perf_counter()
        predict(row)
        times[k] = time.perf_counter() - t0
    return Latency(float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3))


@dataclass
class Entry:
    name: str
    family: str
    accuracy: float
    f1_macro: float
    f1_min: float
    train_s: float
    latency_ms: float
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ece: float = float("nan")  # validation expected calibration error (after the temperature)
    loso: float = float("nan")  # leave-one-source-out pooled accuracy (nan: not measured)

    @property
    def selection_score(self) -> float:
        """What the sweep maximises: validation macro-F1 plus LOSO pooled accuracy, equally weighted,
        so a model that only fits the random split does not win (validation F1 alone without LOSO)."""
        return self.f1_macro + (0.0 if np.isnan(self.loso) else self.loso)


def leaderboard(entries: Sequence[Entry]) -> str:
    """A fixed-width table, best selection score (validation macro-F1 + LOSO) first."""
    head = (f"{'#':>2}  {'model':<46} {'val acc':>7} {'val F1':>7} {'min F1':>7} {'val ECE':>7} "
            f"{'LOSO':>6} {'fit s':>6} {'p50 ms':>7}")
    lines = [head, "-" * len(head)]
    for k, e in enumerate(sorted(entries, key=lambda e: -e.selection_score), 1):
        lines.append(
            f"{k:>2}  {e.name[:46]:<46} {e.accuracy:7.4f} {e.f1_macro:7.4f} {e.f1_min:7.4f} "
            f"{e.ece:7.4f} {e.loso:6.4f} {e.train_s:6.1f} {e.latency_ms:7.3f}"
        )
    return "\n".join(lines)


def family_best(entries: Sequence[Entry]) -> list[Entry]:
    """The best entry (selection score) of each model family."""
    best: dict[str, Entry] = {}
    for e in entries:
        if e.family not in best or e.selection_score > best[e.family].selection_score:
            best[e.family] = e
    return sorted(best.values(), key=lambda e: -e.selection_score)


def reliability_png(confidence: np.ndarray, correct: np.ndarray, path: Path, title: str,
                    bins: int = 10) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with bin sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model.openset import expected_calibration_error, reliability_table

    table = reliability_table(np.asarray(confidence), np.asarray(correct), bins)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(5, 6), dpi=90, height_ratios=(3, 1), sharex=True)
    centers = [(b["lo"] + b["hi"]) / 2 for b in table]
    ax.bar(centers, [b["accuracy"] for b in table], width=1.0 / bins, edgecolor="black", alpha=0.7,
           label="accuracy")
    ax.plot([b["confidence"] for b in table], [b["accuracy"] for b in table], "o", color="C1",
            label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray")
    ax.set_ylabel("accuracy")
    ece = expected_calibration_error(np.asarray(confidence), np.asarray(correct))
    ax.set_title(f"{title}\nECE {ece:.4f}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax2.bar(centers, [b["rows"] for b in table], width=1.0 / bins, edgecolor="black")
    ax2.set_yscale("log")
    ax2.set_xlabel("confidence")
    ax2.set_ylabel("rows")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def tradeoff_png(curve: Sequence[Any], chosen: Any, path: Path, title: str) -> Path:
    """True gestures accepted vs non-gestures rejected, one point per OOD threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=90)
    ax.plot([p.accepted for p in curve], [p.rejected for p in curve], "-", color="C0")
    ax.plot([chosen.accepted], [chosen.rejected], "o", color="C3",
            label=f"chosen: {chosen.accepted:.3f} accepted, {chosen.rejected:.3f} rejected")
    ax.set_xlabel("true gestures accepted")
    ax.set_ylabel("non-gestures rejected (no_gesture)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- confidence quality
def auroc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """AUROC of `confidence` for telling right answers from wrong ones (0.5: no information; NaN when
    every answer is right or every answer is wrong)."""
    from sklearn.metrics import roc_auc_score

    correct = np.asarray(correct, dtype=bool)
    if correct.all() or not correct.any():
        return float("nan")
    return float(roc_auc_score(correct, np.asarray(confidence, dtype=np.float64)))


def risk_coverage(confidence: np.ndarray, correct: np.ndarray, points: int = 50) -> list[dict[str, float]]:
    """Accuracy of the most confident answers as the share answered (coverage) grows: answer only
    above a confidence cut, most confident first."""
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")
    right = np.asarray(correct, dtype=np.float64)[order]
    conf = np.asarray(confidence, dtype=np.float64)[order]
    hits = np.cumsum(right)
    out = []
    for c in np.linspace(1.0 / points, 1.0, points):
        k = max(1, round(float(c) * len(order)))
        out.append({"coverage": float(k / len(order)), "accuracy": float(hits[k - 1] / k),
                    "min_confidence": float(conf[k - 1])})
    return out


def selective_accuracy(confidence: np.ndarray, correct: np.ndarray, coverage: float = 0.8) -> float:
    """Accuracy of the `coverage` share of answers with the highest confidence."""
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")
    k = max(1, round(coverage * len(order)))
    return float(np.mean(np.asarray(correct, dtype=np.float64)[order[:k]]))


def brier_decomposition(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Brier score of the confidence read as P(the answer is right), and Murphy's decomposition over
    equal-width bins: brier ~ reliability - resolution + uncertainty. Resolution is how far the
    accuracy of confidence groups moves away from the overall accuracy: 0 for a constant confidence."""
    f = np.asarray(confidence, dtype=np.float64)
    o = np.asarray(correct, dtype=np.float64)
    base = float(o.mean())
    idx = np.clip(np.digitize(f, np.linspace(0.0, 1.0, bins + 1)[1:-1], right=True), 0, bins - 1)
    reliability = resolution = 0.0
    for b in range(bins):
        inside = idx == b
        if inside.any():
            w = float(inside.mean())
            reliability += w * (float(f[inside].mean()) - float(o[inside].mean())) ** 2
            resolution += w * (float(o[inside].mean()) - base) ** 2
    return {"brier": float(np.mean((f - o) ** 2)), "reliability": reliability, "resolution": resolution,
            "uncertainty": base * (1.0 - base)}


def confidence_quality(confidence: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """Every figure of a confidence's meaning on one set of answers (docs/recognition.md)."""
    from model.openset import expected_calibration_error

    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    return {"answers": float(len(conf)), "accuracy": float(right.mean()) if len(right) else float("nan"),
            "auroc": auroc(conf, right), "accuracy_at_80_coverage": selective_accuracy(conf, right, 0.8),
            "ece": expected_calibration_error(conf, right),
            **brier_decomposition(conf, right),
            "median_confidence_right": float(np.median(conf[right])) if right.any() else float("nan"),
            "median_confidence_wrong": float(np.median(conf[~right])) if (~right).any() else float("nan")}


def risk_coverage_png(curves: dict[str, list[dict[str, float]]], path: Path, title: str) -> Path:
    """Accuracy against coverage, one line per named curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=90)
    for k, (name, curve) in enumerate(curves.items()):
        ax.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve], "-", color=f"C{k}",
                label=name)
    ax.axvline(0.8, color="gray", ls=":", lw=1)
    ax.axhline(0.99, color="gray", ls=":", lw=1)
    ax.set_xlabel("coverage (share of answers kept, most confident first)")
    ax.set_ylabel("accuracy of the kept answers")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
