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


def leaderboard(entries: Sequence[Entry]) -> str:
    """A fixed-width table, best validation macro-F1 first."""
    head = f"{'#':>2}  {'model':<46} {'val acc':>7} {'val F1':>7} {'min F1':>7} {'fit s':>6} {'p50 ms':>7}"
    lines = [head, "-" * len(head)]
    for k, e in enumerate(sorted(entries, key=lambda e: -e.f1_macro), 1):
        lines.append(
            f"{k:>2}  {e.name[:46]:<46} {e.accuracy:7.4f} {e.f1_macro:7.4f} {e.f1_min:7.4f} "
            f"{e.train_s:6.1f} {e.latency_ms:7.3f}"
        )
    return "\n".join(lines)


def family_best(entries: Sequence[Entry]) -> list[Entry]:
    """The best entry (validation macro-F1) of each model family."""
    best: dict[str, Entry] = {}
    for e in entries:
        if e.family not in best or e.f1_macro > best[e.family].f1_macro:
            best[e.family] = e
    return sorted(best.values(), key=lambda e: -e.f1_macro)
