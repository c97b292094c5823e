"""Readers for labelled landmark files -> (N, 21, 2) x,y + labels, ready for `model.features`.

Both supported formats are CSV files with a header naming the columns, so one reader serves both:

* HaGRID landmark CSV: `x1,y1,z1,...,x21,y21,z21,label` (pixel x,y; MediaPipe z, ignored);
* kp42 (`../shared/data/landmarks/landmarks_kp42.csv`): `source,format,kind,label,...,x1,y1,z1,...`
  with wrist-relative, max-abs normalised x,y and empty z.

Pixel and kp42 rows give identical features (the feature function normalises both the same way).
A row with a missing or invalid value is skipped and counted under its reason; nothing is guessed.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.features import N_LANDMARKS, invalid_reason

X_COLUMNS = tuple(f"x{i}" for i in range(1, N_LANDMARKS + 1))
Y_COLUMNS = tuple(f"y{i}" for i in range(1, N_LANDMARKS + 1))


class DatasetError(ValueError):
    """A file that cannot be read as landmark data at all (missing columns, no usable rows)."""


@dataclass
class LandmarkDataset:
    xy: np.ndarray  # (N, 21, 2) float64, as stored (pixels or kp42)
    labels: np.ndarray  # (N,) str, lower-cased
    sources: np.ndarray  # (N,) str: the `source` column, or the file name when there is none
    files: tuple[str, ...] = ()
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows skipped

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.tolist()))

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels.tolist()).items()))

    def fingerprint(self) -> str:
        """sha256 of the rows used (x,y as float64 + label + source), independent of file layout."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.xy, dtype="<f8").tobytes())
        for label, source in zip(self.labels.tolist(), self.sources.tolist(), strict=True):
            digest.update(f"{label}\x1f{source}\x1e".encode())
        return digest.hexdigest()

    def subset(self, index: np.ndarray) -> LandmarkDataset:
        return LandmarkDataset(
            self.xy[index], self.labels[index], self.sources[index], self.files, Counter(self.skipped)
        )


def _parse_row(row: Sequence[str], x_idx: Sequence[int], y_idx: Sequence[int]) -> np.ndarray | str:
    """(21, 2) float64 x,y, or the reason the row is unusable."""
    values = np.empty((N_LANDMARKS, 2), dtype=np.float64)
    for i, (xi, yi) in enumerate(zip(x_idx, y_idx, strict=True)):
        for j, col in enumerate((xi, yi)):
            if col >= len(row):
                return "too few columns"
            raw = row[col].strip()
            if not raw:
                return "missing value"
            try:
                value = float(raw)
            except ValueError:
                return "non-numeric value"
            if not math.isfinite(value):
                return "non-finite value"
            values[i, j] = value
    return invalid_reason(values) or values


def read_landmark_csv(path: str | Path) -> LandmarkDataset:
    """Read one HaGRID-style or kp42 landmark CSV (detected from its header)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [c for c in (*X_COLUMNS, *Y_COLUMNS, "label") if c not in header]
        if missing:
            raise DatasetError(f"{path}: not a landmark CSV, missing columns {missing[:5]}")
        x_idx = [header.index(c) for c in X_COLUMNS]
        y_idx = [header.index(c) for c in Y_COLUMNS]
        label_idx = header.index("label")
        source_idx = header.index("source") if "source" in header else None
        xy: list[np.ndarray] = []
        labels: list[str] = []
        sources: list[str] = []
        skipped: Counter[str] = Counter()
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue  # blank line, not data
            if len(row) < len(header):
                skipped["too few columns"] += 1
                continue
            label = row[label_idx].strip().lower() if label_idx < len(row) else ""
            if not label:
                skipped["missing label"] += 1
                continue
            parsed = _parse_row(row, x_idx, y_idx)
            if isinstance(parsed, str):
                skipped[parsed] += 1
                continue
            source = row[source_idx].strip() if source_idx is not None and source_idx < len(row) else ""
            xy.append(parsed)
            labels.append(label)
            sources.append(source or path.name)
    if not xy:
        raise DatasetError(f"{path}: no usable rows (skipped: {dict(skipped)})")
    return LandmarkDataset(
        np.stack(xy), np.array(labels), np.array(sources), (str(path),), skipped
    )


def concat(datasets: Iterable[LandmarkDataset]) -> LandmarkDataset:
    parts = list(datasets)
    if not parts:
        raise DatasetError("no datasets given")
    skipped: Counter[str] = Counter()
    for part in parts:
        skipped.update(part.skipped)
    return LandmarkDataset(
        np.concatenate([p.xy for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.sources for p in parts]),
        tuple(f for p in parts for f in p.files),
        skipped,
    )


def read_datasets(paths: Sequence[str | Path]) -> LandmarkDataset:
    """Read and concatenate several landmark files."""
    return concat(read_landmark_csv(p) for p in paths)
