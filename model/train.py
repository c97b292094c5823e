"""`gesture-maze train`: read landmark data, sweep models, track everything in MLflow, register the best.

    gesture-maze train --data ../shared/data/landmarks/landmarks_kp42.csv [--data more.csv ...]
                       [--experiment NAME] [--quick] [--out-default [DIR]]

Steps: read + validate rows -> de-duplicate -> stratified train/val/test split -> mirroring and
feature ablation -> sweep (each candidate fitted on train + mirrored and slightly rotated copies
(`model.splits.Augmentation`); a temperature fitted on
validation; scored on validation and leave-one-source-out; one MLflow run each) -> leaderboard -> best
candidate (validation macro-F1 + LOSO pooled accuracy) -> open-set head (temperature, OOD score and its
`no_gesture` threshold, chosen on validation rows and held-out real negatives) -> refitted on
train+val and scored ONCE on test -> registered as `gesture-classifier`; alias `champion` moves only
when it beats the current champion on the same test split -> optional default model.

Entry point for other code (e.g. a retraining job): `main([...the same arguments...])` returns 0 on
success; the registered version and the default model directory are its outputs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model import drift
from model.classifier import (
    REGISTERED_MODEL_NAME,
    GestureClassifier,
    ModelInfo,
    ModelLoadError,
    load_registered,
)
from model.datasets import LandmarkDataset, read_datasets
from model.estimators import Candidate, build, drop_training_state, sweep
from model.evaluation import (
    Entry,
    Scores,
    confidence_quality,
    confusion_png,
    family_best,
    leaderboard,
    reliability_png,
    risk_coverage,
    risk_coverage_png,
    score,
    single_sample_latency,
    tradeoff_png,
)
from model.expansion import DEFAULT_SIZE as DEFAULT_EXPANSION_SIZE
from model.expansion import EXPANSION_FILE, MIN_AGREEMENT, KernelExpansion
from model.features import BLOCKS, FEATURE_VERSION, features_from_xy, mirror_xy
from model.openset import (
    DEFAULT_MIN_ACCEPT,
    NO_GESTURE,
    OPENSET_FILE,
    OpenSetHead,
    TradeOff,
    choose_threshold,
    duel_confidence,
    expected_calibration_error,
    fit_duel_sigmoid,
    fit_pairwise_sigmoid,
    fit_temperature,
    is_no_gesture,
    pairwise_coupling,
    reliability_table,
    softmax,
    trade_off_curve,
    weakest_duels,
)
from model.registry import (
    current_champion,
    default_data_dir,
    default_tracking_uri,
    ensure_experiment,
    library_versions,
    register,
    set_champion,
    untrusted_types,
    write_model_dir,
)
from model.splits import (
    DEFAULT_AUGMENTATION,
    MAX_ROTATION_DEGREES,
    SPLIT_SEED,
    Augmentation,
    Prepared,
    Split,
    TrainOnlyReport,
    add_train_only,
    as_recorded,
    augmented,
    mirrored_features,
    prepare,
    split,
    with_mirrored,
)

log = logging.getLogger("gesture_maze.train")
DEFAULT_OUT = Path(__file__).resolve().parent / "default"
# Real negatives (hands in poses that are none of the gestures) shipped with the repository.
DEFAULT_NEGATIVES_DIR = Path(__file__).resolve().parent.parent / "data" / "negatives"
# Real gesture rows recorded by other people, shipped with the repository: training split only.
DEFAULT_TRAIN_ONLY_DIR = Path(__file__).resolve().parent.parent / "data" / "gestures"
# Natural hands showing no gesture (HaGRID's `no_gesture`), split by person: the `no_gesture` class.
DEFAULT_NATURAL_DIR = Path(__file__).resolve().parent.parent / "data" / "natural"
# Gesture hands of people no model is trained on (HaGRID's test people): evaluation only.
DEFAULT_HELDOUT_DIR = Path(__file__).resolve().parent.parent / "data" / "heldout"
NATURAL_SPLIT_SEED = 7
DEFAULT_LOSO_ACCEPT = 0.95
QUICK_NO_GESTURE_CAP = 150  # --quick: no_gesture hands (before mirrors), like the gestures' 150 per class
# Feature-vector column prefixes for the ablation: each adds the next block of model.features.BLOCKS.
_BLOCK_ENDS = np.cumsum(list(BLOCKS.values()))
FEATURE_SUBSETS = {"+".join(list(BLOCKS)[: k + 1]): slice(0, int(end)) for k, end in enumerate(_BLOCK_ENDS)}
BASELINE = Candidate("svm_poly", {"C": 100, "degree": 2})  # the seed's winner and the floor


@dataclass
class Negatives:
    """Feature rows of hands showing none of the gestures, halved: threshold choice / test report.
    `*_mirrored` are the same hands x-mirrored (the other hand), used as known non-gestures."""

    val: np.ndarray
    test: np.ndarray
    files: tuple[str, ...]
    val_mirrored: np.ndarray
    test_mirrored: np.ndarray
    val_xy: np.ndarray | None = None  # the validation half's landmarks (the no_gesture class's rows)

    @classmethod
    def read(cls, paths: Sequence[str | Path]) -> Negatives | None:
        if not paths:
            return None
        ds = read_datasets(list(paths))
        _, first = np.unique(features_from_xy(ds.xy), axis=0, return_index=True)
        xy = ds.xy[np.sort(first)]
        X, X_m = features_from_xy(xy), features_from_xy(mirror_xy(xy))
        order = np.random.default_rng(SPLIT_SEED).permutation(len(X))
        val, test = np.sort(order[: len(X) // 2]), np.sort(order[len(X) // 2 :])
        return cls(X[val], X[test], tuple(ds.files), X_m[val], X_m[test], xy[val])

    def known(self, *, include_test: bool) -> np.ndarray:
        """The rows kept as known non-gestures: the validation half (measuring), or all (shipping)."""
        parts = [self.val, self.val_mirrored] + ([self.test, self.test_mirrored] if include_test else [])
        return np.vstack(parts)


@dataclass
class NaturalHands:
    """Natural hands showing none of the gestures (resting, hanging, holding something: HaGRID's
    `no_gesture`), split by person (the `source` column) into train (1/2), validation (1/4) and test
    (1/4). Train people's hands are the `no_gesture` class; validation people's calibrate it and
    join the final fit; test people's are never trained on."""

    xy: np.ndarray
    X: np.ndarray
    part: np.ndarray  # "train" | "val" | "test", per row
    files: tuple[str, ...]

    @classmethod
    def read(cls, paths: Sequence[str | Path]) -> NaturalHands | None:
        if not paths:
            return None
        ds = read_datasets(list(paths))
        persons = np.array(sorted(set(ds.sources.tolist())))
        order = np.random.default_rng(NATURAL_SPLIT_SEED).permutation(persons)
        n = len(order)
        part = {p: "train" if i < n // 2 else "val" if i < 3 * n // 4 else "test"
                for i, p in enumerate(order)}
        return cls(ds.xy, features_from_xy(ds.xy), np.array([part[s] for s in ds.sources]), tuple(ds.files))

    def rows(self, *parts: str) -> np.ndarray:
        return self.X[np.isin(self.part, parts)]

    def hands(self, *parts: str) -> np.ndarray:
        return self.xy[np.isin(self.part, parts)]


@dataclass
class Context:
    data: Prepared
    split: Split
    labels: list[str]
    fingerprint: dict[str, Any]
    quick: bool
    negatives: Negatives | None = None
    augmentation: Augmentation = DEFAULT_AUGMENTATION
    natural: NaturalHands | None = None
    no_gesture_cap: int | None = None  # at most this many no_gesture hands (before mirrors); None: all

    def training_rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows `index` as every fit sees them: with mirrors and rotated copies."""
        return augmented(self.data, index, self.augmentation)

    def training_hands(self, index: np.ndarray) -> np.ndarray:
        """The landmarks of `training_rows(index)`, row for row."""
        return self.augmentation.expand(self.data.xy[index])

    def no_gesture_hands(self, final: bool) -> np.ndarray:
        """Landmarks of the `no_gesture` class (empty without natural hands): the natural hands of the
        training people (and the validation people for the final fit) and the recorded negatives'
        validation half, each with its mirror."""
        if self.natural is None:
            return np.empty((0, 21, 2))
        parts = [self.natural.hands(*(("train", "val") if final else ("train",)))]
        if self.negatives is not None and self.negatives.val_xy is not None:
            parts.append(self.negatives.val_xy)
        xy = np.concatenate(parts)
        if self.no_gesture_cap is not None:  # a smoke run: as few as the gestures' (<= 150 per class)
            xy = xy[np.random.default_rng(0).permutation(len(xy))[: self.no_gesture_cap]]
        return np.concatenate([xy, mirror_xy(xy)])

    def fit_rows(self, index: np.ndarray, final: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What a fit learns from: `training_rows(index)` and the `no_gesture` rows; with landmarks."""
        X, y = self.training_rows(index)
        hands = self.training_hands(index)
        extra = self.no_gesture_hands(final)
        if not len(extra):
            return X, y, hands
        return (np.vstack([X, features_from_xy(extra)]), np.concatenate([y, np.full(len(extra), NO_GESTURE)]),
                np.concatenate([hands, extra]))


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gesture-maze train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True, metavar="PATH",
                   help="landmark CSV (HaGRID x1,y1,z1..label or kp42); repeat for several")
    p.add_argument("--experiment", default="gesture-maze", help="MLflow experiment name")
    p.add_argument("--quick", action="store_true", help="3 candidates, <=150 training rows per class")
    p.add_argument("--out-default", nargs="?", const=str(DEFAULT_OUT), default=None, metavar="DIR",
                   help=f"also write the final model as the default model (default dir: {DEFAULT_OUT})")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                   "else sqlite:///<data dir>/mlflow.db)")
    p.add_argument("--data-dir", default=None, help="local state directory (default: $GM_DATA_DIR or "
                   "~/.local/share/gesture-maze)")
    p.add_argument("--sweep-rows", type=int, default=None,
                   help="subsample the training split to this many rows for the sweep (final fit uses all)")
    p.add_argument("--no-loso", action="store_true", help="skip the leave-one-source-out evaluation")
    p.add_argument("--candidate", default=None, metavar="FAMILY:K=V,...",
                   help="train this one candidate instead of the sweep, e.g. 'svm_rbf:C=300,gamma=scale' or "
                   "'mlp:hidden=256x128,alpha=0.0001' (what a scheduled retrain of the champion uses)")
    p.add_argument("--negatives", action="append", default=None, metavar="PATH",
                   help="landmark CSV of hands in non-gesture poses (repeat; default: every CSV in "
                   f"{DEFAULT_NEGATIVES_DIR} when it exists)")
    p.add_argument("--no-negatives", action="store_true",
                   help="choose the no_gesture threshold from known gestures only")
    add_train_only_arguments(p)
    add_natural_arguments(p)
    add_augmentation_arguments(p)
    add_expansion_arguments(p)
    p.add_argument("--heldout", action="append", default=None, metavar="PATH",
                   help="landmark CSV of gesture hands of people never trained on, evaluation only (repeat; "
                   f"default: every CSV in {DEFAULT_HELDOUT_DIR})")
    p.add_argument("--no-ablation", action="store_true", help="skip the mirroring/feature ablation")
    p.add_argument("--loso-accept", type=float, default=DEFAULT_LOSO_ACCEPT,
                   help="share of a new person's true gestures (leave-one-source-out folds) the trained "
                   f"no_gesture class must still answer with a gesture: sets its probability cut (default "
                   f"{DEFAULT_LOSO_ACCEPT}; without LOSO the class answers when it is the most likely)")
    p.add_argument("--min-accept", type=float, default=DEFAULT_MIN_ACCEPT,
                   help="share of validation gestures the no_gesture threshold must keep (default "
                   f"{DEFAULT_MIN_ACCEPT})")
    return p.parse_args(list(argv))


def parse_candidate(text: str) -> Candidate:
    """`family:k=v,k=v` -> Candidate (numbers parsed as int/float; other values kept as text)."""
    family, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, sep, raw = part.partition("=")
        if not sep:
            raise SystemExit(f"--candidate: expected key=value, got {part!r}")
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        params[key.strip()] = value
    return Candidate(family.strip(), params)


def _csv_paths(given: Sequence[str] | None, default_dir: Path, off: bool) -> list[Path]:
    """The files given, else every CSV in the shipped folder; none when switched off."""
    if off:
        return []
    if given:
        return [Path(p) for p in given]
    return sorted(default_dir.glob("*.csv")) if default_dir.is_dir() else []


def negative_paths(args: argparse.Namespace) -> list[Path]:
    return _csv_paths(args.negatives, DEFAULT_NEGATIVES_DIR, args.no_negatives)


def add_train_only_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-only", action="append", default=None, metavar="PATH",
                   help="landmark CSV whose rows join the training split only (repeat; default: every CSV "
                   f"in {DEFAULT_TRAIN_ONLY_DIR} when it exists); validation and test stay --data's")
    p.add_argument("--no-train-only", action="store_true", help="train on --data alone")


def train_only_paths(args: argparse.Namespace) -> list[Path]:
    return _csv_paths(args.train_only, DEFAULT_TRAIN_ONLY_DIR, args.no_train_only)


def add_natural_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--natural", action="append", default=None, metavar="PATH",
                   help="landmark CSV of natural hands showing no gesture, `source` = person (repeat; "
                   "default: "
                   f"every CSV in {DEFAULT_NATURAL_DIR}); they become a trained `no_gesture` class")
    p.add_argument("--no-natural", action="store_true", help="no trained no_gesture class")


def natural_paths(args: argparse.Namespace) -> list[Path]:
    """The natural-hand files given, else this folder's; none with --no-natural, and none for a
    --quick smoke run unless --natural names them (a smoke run stays the small gestures-only fit)."""
    off = getattr(args, "no_natural", True) or (getattr(args, "quick", False) and not args.natural)
    return _csv_paths(getattr(args, "natural", None), DEFAULT_NATURAL_DIR, off)


def add_augmentation_arguments(p: argparse.ArgumentParser) -> None:
    """Unset unless given: `augmentation_of` fills in the default (train) or the champion's (retrain)."""
    p.add_argument("--rotated-copies", type=int, default=None, metavar="N",
                   help="copies of every training row (and its mirror) turned by a random small angle "
                   f"(default {DEFAULT_AUGMENTATION.rotated_copies}; 0 = mirrors only)")
    p.add_argument("--max-rotation", type=float, default=None, metavar="DEG",
                   help=f"largest angle of those turns, at most {MAX_ROTATION_DEGREES:g} "
                   f"(default {DEFAULT_AUGMENTATION.max_degrees:g})")


def augmentation_of(args: argparse.Namespace, fallback: Augmentation = DEFAULT_AUGMENTATION) -> Augmentation:
    """The augmentation asked for on the command line; what was not given comes from `fallback`."""
    copies = fallback.rotated_copies if args.rotated_copies is None else args.rotated_copies
    degrees = fallback.max_degrees if args.max_rotation is None else args.max_rotation
    try:
        return Augmentation(copies, degrees)
    except ValueError as exc:
        raise SystemExit(f"--rotated-copies/--max-rotation: {exc}") from exc


@dataclass
class SplitData:
    dataset: LandmarkDataset  # --data as read
    data: Prepared  # de-duplicated --data rows, then the train-only rows
    split: Split
    train_only: LandmarkDataset | None
    train_only_report: TrainOnlyReport | None

    def fingerprint(self) -> dict[str, Any]:
        """What was trained on: `--data` (whose split is the one scored) and the train-only files."""
        ds, data, extra = self.dataset, self.data, self.train_only
        labels = sorted(set(data.y.tolist()))
        out: dict[str, Any] = {
            "sha256": ds.fingerprint(), "rows": len(ds), "rows_used": len(data.y), "n_classes": len(labels),
            "classes": labels, "files": [Path(f).name for f in ds.files], "skipped": dict(ds.skipped),
            "duplicates_dropped": data.duplicates, "conflicting_dropped": data.conflicting,
        }
        if extra is not None:
            out["train_only"] = {"sha256": extra.fingerprint(), "rows": len(extra),
                                 "files": [Path(f).name for f in extra.files], **vars(self.train_only_report)}
        return out


def load_split_data(args: argparse.Namespace, *, verbose: bool = True) -> SplitData:
    """--data read, de-duplicated and split (fixed seed); train-only rows appended to the training split."""
    ds = read_datasets(args.data)
    data = prepare(ds)
    sp = split(data.y)
    if verbose:
        _describe(ds, data)
    paths = train_only_paths(args)
    extra = read_datasets(paths) if paths else None
    report = None
    if extra is not None:
        data, sp, report = add_train_only(data, sp, extra)
        if verbose:
            print(f"train-only rows from {len(paths)} file(s): {report.added} added to the training split "
                  f"({report.duplicates} duplicates, {report.unknown_label} unknown labels, "
                  f"{report.conflicting} conflicting dropped)")
    return SplitData(ds, data, sp, extra, report)


# ----------------------------------------------------------------------------------------------- data
def _describe(ds: LandmarkDataset, data: Prepared) -> None:
    print(f"read {len(ds)} rows from {len(ds.files)} file(s); skipped {sum(ds.skipped.values())}", end="")
    print(f" {dict(ds.skipped)}" if ds.skipped else "")
    print(f"de-duplicated: {data.duplicates} exact duplicate rows dropped, "
          f"{data.conflicting} rows with conflicting labels dropped -> {len(data.y)} rows")
    counts = Counter(data.y.tolist())
    print("per-class rows: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


def _quick_subset(data: Prepared, index: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(data.y[index]):
        rows = index[data.y[index] == label]
        keep.append(rng.permutation(rows)[:per_class])
    return np.sort(np.concatenate(keep))


def _subsample(data: Prepared, index: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Stratified subsample of `index` to about `n` rows (every class keeps at least 50)."""
    if n is None or n >= len(index):
        return index
    frac = n / len(index)
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(data.y[index]):
        rows = rng.permutation(index[data.y[index] == label])
        keep.append(rows[: max(50, round(frac * len(rows)))])
    return np.sort(np.concatenate(keep))


# -------------------------------------------------------------------------------------------- fitting
def _fit(candidate: Candidate, X: np.ndarray, y: np.ndarray) -> tuple[Any, float]:
    model = build(candidate)
    t0 = time.perf_counter()
    model.fit(X, y)
    return model, time.perf_counter() - t0


def _wrap(model: Any, name: str, openset: OpenSetHead | None = None,
          expansion: KernelExpansion | None = None) -> GestureClassifier:
    return GestureClassifier(model, ModelInfo(name, "candidate", None, "training", FEATURE_VERSION), openset,
                             expansion)


def add_expansion_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expansion-size", type=int, default=DEFAULT_EXPANSION_SIZE, metavar="M",
                   help="serve an RBF SVM's decisions from a kernel expansion over M of its support vectors "
                   "when it answers validation hands as the SVM does "
                   f"(>= {100 * MIN_AGREEMENT:.1f} %%; 0: never; default {DEFAULT_EXPANSION_SIZE})")


def compile_expansion(clf: GestureClassifier, size: int, X_check: np.ndarray) -> KernelExpansion | None:
    """The kernel expansion to ship with `clf` (model.expansion), or None: off, nothing to gain, or it
    answers fewer than `MIN_AGREEMENT` of the rows `X_check` as the exact SVM does."""
    if size <= 0:
        return None
    started = time.perf_counter()
    expansion = clf.fit_expansion(size)
    if expansion is None:
        print(f"kernel expansion: nothing to gain ({size} basis vectors or more needed)")
        return None
    agreement = clf.agreement(X_check, expansion)
    shipped = agreement >= MIN_AGREEMENT
    print(f"kernel expansion over {expansion.size} support vectors ({time.perf_counter() - started:.0f} s): "
          f"{agreement:.4f} of validation hands answered as the SVM answers them; "
          + ("shipped" if shipped else f"not shipped (needs {MIN_AGREEMENT})"))
    return expansion.with_agreement(agreement) if shipped else None


def _predict(model: Any, X: np.ndarray) -> np.ndarray:
    """Argmax over the known gestures (closed-set: a trained `no_gesture` class and the open-set head
    are scored separately, so figures stay comparable with models that have neither)."""
    scores = _wrap(model, "eval").class_scores(X)
    classes = np.asarray(model.classes_)
    scores = np.where(classes[None, :] == NO_GESTURE, -np.inf, scores)
    return classes[np.argmax(scores, axis=1)]


def _label_index(model: Any, y: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(model.classes_), y)


@dataclass
class Calibrated:
    """A candidate's validation figures after its temperature."""

    beta: float
    scores: Scores
    ece: float


def calibrate_on(model: Any, X_val: np.ndarray, y_val: np.ndarray, labels: list[str]) -> Calibrated:
    """Fit the temperature on validation rows; score the calibrated predictions there."""
    clf = _wrap(model, "eval")
    index = _label_index(model, y_val)
    coupling = None
    if _is_svm(model):
        coupling = fit_pairwise_sigmoid(clf.pairwise_decisions(X_val), index, len(model.classes_))
        logits = np.log(_coupled(clf, X_val, coupling))
    else:
        logits = clf.class_scores(X_val)
    beta = fit_temperature(logits, index)
    proba = softmax(logits, beta)
    pred = _predict(model, X_val)
    top = np.asarray(model.classes_)[np.argmax(proba, 1)]
    ece = expected_calibration_error(proba.max(axis=1), top == y_val)
    return Calibrated(beta, score(y_val, pred, labels), ece)


def _is_svm(model: Any) -> bool:
    return type(model.steps[-1][1]).__name__ == "SVC"


def _coupled(clf: GestureClassifier, X: np.ndarray, coupling: tuple[float, float]) -> np.ndarray:
    """Coupled pairwise probabilities of an SVM (estimator classes_ order), before any temperature."""
    return pairwise_coupling(clf.pairwise_decisions(X), len(clf.classes), *coupling)


# --------------------------------------------------------------------------------------------- mlflow
def _log_scores(mlflow: Any, scores: Scores, prefix: str, title: str, tmp: Path) -> None:
    mlflow.log_metrics(scores.metrics(prefix))
    png = confusion_png(scores, tmp / f"{prefix}confusion_matrix.png", title)
    mlflow.log_artifact(str(png))
    report = tmp / f"{prefix}classification_report.txt"
    report.write_text(scores.report)
    mlflow.log_artifact(str(report))


def _log_model(mlflow: Any, model: Any, X_example: np.ndarray, ctx: Context,
               openset: Path | None = None, expansion: Path | None = None) -> None:
    """The model as skops; the open-set head and the kernel expansion (if any) ride along as extra
    files (`extra_files/openset.npz`, `extra_files/expansion.npz` in the logged model, where
    `load_registered` finds them)."""
    from mlflow.models import infer_signature

    example = X_example[:2].astype(np.float32)
    drop_training_state(model)
    mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=untrusted_types(model),
        signature=infer_signature(example, _predict(model, example)),
        input_example=example,
        # Explicit requirements: MLflow would otherwise infer them by loading the model in a subprocess.
        pip_requirements=[f"{lib}=={ver}" for lib, ver in library_versions().items()
                          if lib in ("scikit-learn", "skops", "numpy")],
        metadata={"feature_version": FEATURE_VERSION, "classes": [str(c) for c in model.classes_]},
        extra_files=[str(f) for f in (openset, expansion) if f is not None] or None,
    )


def _fingerprint_tags(ctx: Context) -> dict[str, str]:
    fp = ctx.fingerprint
    return {
        "data_sha256": fp["sha256"],
        "data_rows": str(fp["rows"]),
        "data_classes": str(fp["n_classes"]),
        "feature_version": FEATURE_VERSION,
    }


# ------------------------------------------------------------------------------------------- ablation
def ablation(ctx: Context, mlflow: Any, train_idx: np.ndarray) -> dict[str, dict[str, float]]:
    """Mirroring and feature-set choices, measured with the baseline SVC on the validation split.

    `mirrored val` scores the other hand: every validation row x-mirrored. A model for both hands must
    do well on both; mirroring the training rows is what gets it there. With all features, the run's
    rotated copies (`yes+rotated`) are measured on top.
    """
    d, s = ctx.data, ctx.split
    X_val, X_val_m, y_val = d.X[s.val], mirrored_features(d, s.val), d.y[s.val]
    rows = {"no": (d.X[train_idx], d.y[train_idx]), "yes": with_mirrored(d, train_idx)}
    if ctx.augmentation.rotated_copies:
        rows["yes+rotated"] = ctx.training_rows(train_idx)
    all_features = list(FEATURE_SUBSETS)[-1]
    results: dict[str, dict[str, float]] = {}
    for fname, cols in FEATURE_SUBSETS.items():
        for mirror in rows if fname == all_features else ("no", "yes"):
            X_tr, y_tr = rows[mirror]
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler
            from sklearn.svm import SVC

            model = make_pipeline(StandardScaler(), SVC(kernel="poly", degree=2, C=100))
            model.fit(X_tr[:, cols], y_tr)
            a = score(y_val, model.predict(X_val[:, cols]), ctx.labels)
            b = score(y_val, model.predict(X_val_m[:, cols]), ctx.labels)
            key = f"{fname}|mirror={mirror}"
            results[key] = {"val_f1": a.f1_macro, "val_acc": a.accuracy,
                            "mirrored_val_f1": b.f1_macro, "mirrored_val_acc": b.accuracy}
    print("\nAblation (SVC poly deg 2 C=100, validation split; 'mirrored' = the other hand):")
    print(f"  {'features':<26} {'mirror':>11} {'val acc':>8} {'val F1':>8} {'mir acc':>8} {'mir F1':>8}")
    for key, r in results.items():
        fname, mirror = key.split("|")
        print(f"  {fname:<26} {mirror.split('=')[1]:>11} {r['val_acc']:8.4f} {r['val_f1']:8.4f} "
              f"{r['mirrored_val_acc']:8.4f} {r['mirrored_val_f1']:8.4f}")
    with mlflow.start_run(run_name="ablation-mirroring-features", nested=True):
        mlflow.set_tags(_fingerprint_tags(ctx))
        for key, r in results.items():
            safe = key.replace("|", "__").replace("+", "_").replace("=", "_")
            mlflow.log_metrics({f"{safe}__{m}": v for m, v in r.items()})
        mlflow.log_dict(results, "ablation.json")
    return results


# ---------------------------------------------------------------------------------------------- sweep
def run_sweep(ctx: Context, mlflow: Any, candidates: list[Candidate], train_idx: np.ndarray,
              loso: bool = False) -> list[Entry]:
    """Every candidate: fit on train (augmented), temperature + scores on validation, optionally LOSO."""
    from tqdm import tqdm

    d, s = ctx.data, ctx.split
    X_tr, y_tr, _ = ctx.fit_rows(train_idx)
    X_val, y_val = d.X[s.val], d.y[s.val]
    entries: list[Entry] = []
    bar = tqdm(candidates, desc="sweep", unit="model", file=sys.stderr)
    for cand in bar:
        bar.set_postfix_str(cand.name[:40])
        with mlflow.start_run(run_name=cand.name, nested=True) as run, tempfile.TemporaryDirectory() as tmp:
            mlflow.set_tags({**_fingerprint_tags(ctx), "family": cand.family, "stage": "sweep"})
            mlflow.log_params({"family": cand.family, **cand.params, "train_rows": len(y_tr),
                               **ctx.augmentation.params()})
            model, fit_s = _fit(cand, X_tr, y_tr)
            cal = calibrate_on(model, X_val, y_val, ctx.labels)
            scores = cal.scores
            latency = single_sample_latency(_wrap(model, cand.name).predict, X_val)
            mlflow.log_metrics({"train_time_s": fit_s, "latency_p50_ms": latency.p50_ms,
                                "latency_p95_ms": latency.p95_ms, "val_ece": cal.ece,
                                "temperature_beta": cal.beta})
            pooled, result = float("nan"), None
            if loso:
                result = leave_one_source_out(ctx, cand)
                pooled = result["pooled_accuracy"]
                mlflow.log_metrics({"loso_pooled_accuracy": pooled,
                                    "loso_mean_accuracy": result["mean_accuracy"]})
                mlflow.log_dict(_loggable(result), "leave_one_source_out.json")
            _log_scores(mlflow, scores, "val_", f"{cand.name} (validation)", Path(tmp))
            _log_model(mlflow, model, X_val, ctx)
            entries.append(Entry(cand.name, cand.family, scores.accuracy, scores.f1_macro,
                                 min(scores.per_class_f1.values()), fit_s, latency.p50_ms, run.info.run_id,
                                 {"candidate": cand, "loso": result}, ece=cal.ece, loso=pooled))
    return entries


# ------------------------------------------------------------------------------------------------ loso
def leave_one_source_out(ctx: Context, candidate: Candidate) -> dict[str, Any]:
    """Train on every source but one, test on that one, over the classes other sources also have.

    A source is one person's (or one project's) recordings, so this is how well the model does for
    someone it has never seen. Sources with fewer than 100 usable rows are skipped (too noisy). Only
    sources of the split data are held out, so the figure stays comparable when train-only rows are
    added; those rows are in every fold's training set.
    """
    from sklearn.base import clone

    d = ctx.data
    per_source: dict[str, dict[str, Any]] = {}
    y_all, p_all, outputs = [], [], []
    base = build(candidate)
    for source in d.split_sources:
        held = d.sources == source
        other_classes = set(d.y[~held].tolist())
        test = np.flatnonzero(held & np.isin(d.y, sorted(other_classes)))
        if len(test) < 100:
            continue
        X_tr, y_tr, _ = ctx.fit_rows(np.flatnonzero(~held))
        model = clone(base).fit(X_tr, y_tr)
        pred = _predict(model, d.X[test])
        outputs.append(_fold_outputs(ctx, model, np.flatnonzero(~held), test))
        labels = sorted(set(d.y[test].tolist()))
        with warnings.catch_warnings():  # a source with one class gives a 1x1 confusion matrix: fine
            warnings.simplefilter("ignore", UserWarning)
            sc = score(d.y[test], pred, labels)
        per_source[source] = {"rows": len(test), "classes": labels, "accuracy": sc.accuracy,
                              "f1_macro": sc.f1_macro}
        y_all.append(d.y[test])
        p_all.append(pred)
    if not per_source:
        return {"per_source": {}, "pooled_accuracy": float("nan"), "mean_accuracy": float("nan")}
    y_cat, p_cat = np.concatenate(y_all), np.concatenate(p_all)
    return {
        "outputs": outputs,  # per fold, for the confidence figures (not logged as JSON)
        "per_source": per_source,
        "pooled_accuracy": float(np.mean(y_cat == p_cat)),
        "mean_accuracy": float(np.mean([v["accuracy"] for v in per_source.values()])),
        "mean_f1_macro": float(np.mean([v["f1_macro"] for v in per_source.values()])),
    }


def _fold_outputs(ctx: Context, model: Any, train_idx: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """What a fold's model says about its held-out rows, kept to score the served confidence once the
    head (coupling, temperature, threshold) is known: raw class scores and the distance to the fold's
    own training rows (PCA-16 fitted on them)."""
    clf = _wrap(model, "fold")
    X = ctx.data.X[test]
    X_ref, _ = with_mirrored(ctx.data, train_idx)
    head = OpenSetHead.fit_reference(clf.scaled(X_ref))
    out: dict[str, Any] = {"y": ctx.data.y[test], "classes": np.asarray(model.classes_),
                           "distance": head.ood_scores(clf.scaled(X))}
    if _is_svm(model):
        out["ovo"] = clf.pairwise_decisions(X)
        out["ovr"] = clf.class_scores(X)
    else:
        out["proba"] = model.predict_proba(X)
    return out


def served_from_outputs(out: dict[str, Any], head: OpenSetHead) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answer, confidence, rejected) for a fold's held-out rows under `head`'s calibration and
    threshold, as `GestureClassifier.predict` would answer them."""
    classes = out["classes"]
    if "ovo" in out and head.coupling is not None:
        proba = softmax(np.log(pairwise_coupling(out["ovo"], len(classes), *head.coupling)), head.beta)
    elif "ovo" in out:
        proba = softmax(out["ovr"], head.beta)
    else:
        proba = softmax(np.log(np.maximum(out["proba"], 1e-12)), head.beta)
    if NO_GESTURE in list(classes):  # as GestureClassifier.predict: the likeliest gesture otherwise
        ng = list(classes).index(NO_GESTURE)
        gesture_p = np.where(np.arange(len(classes))[None, :] == ng, -1.0, proba)
        answer, conf = classes[np.argmax(gesture_p, axis=1)], gesture_p.max(axis=1)
        named = is_no_gesture(proba, ng, head.no_gesture_min)
    else:
        answer, conf, named = classes[np.argmax(proba, axis=1)], proba.max(axis=1), np.zeros(len(proba), bool)
    if head.duel is not None and "ovo" in out:
        conf = duel_confidence(answer_duels(out, answer), head.duel)
    rejected = named | (out["distance"] > head.threshold)
    return answer, conf, rejected


def answer_duels(out: dict[str, Any], answer: np.ndarray) -> np.ndarray:
    """Each held-out row's answer's weakest duel against the other gestures (a fold's SVM outputs)."""
    classes = list(out["classes"])
    exclude = classes.index(NO_GESTURE) if NO_GESTURE in classes else None
    weakest = weakest_duels(out["ovo"], len(classes), exclude)
    column = {c: k for k, c in enumerate(classes)}
    return weakest[np.arange(len(weakest)), [column[a] for a in answer]]


def fit_duel_on_folds(outputs: Sequence[dict[str, Any]], head: OpenSetHead) -> tuple[float, float] | None:
    """The weakest-duel sigmoid fitted on leave-one-source-out folds (a new person's answers, as the
    head answers them, right or wrong); None without an SVM's pairwise outputs or a coupling."""
    if not outputs or head.coupling is None or any("ovo" not in out for out in outputs):
        return None
    plain = replace(head, duel=None)
    weakest, right = [], []
    for out in outputs:
        answer, _, rejected = served_from_outputs(out, plain)
        weakest.append(answer_duels(out, answer)[~rejected])
        right.append((answer == out["y"])[~rejected])
    return fit_duel_sigmoid(np.concatenate(weakest), np.concatenate(right))


def loso_confidence(loso: dict[str, Any], head: OpenSetHead) -> dict[str, Any]:
    """The served confidence on leave-one-source-out folds (new people): its quality on the answered
    rows, the share of true gestures answered (not `no_gesture`), and the risk-coverage curve."""
    answers, conf, rejected, truth = [], [], [], []
    outputs = loso.get("outputs", [])
    for k, out in enumerate(outputs):
        # A sigmoid fitted on the folds is scored cross-fitted: each fold by the one fitted on the others.
        fold_head = head if head.duel is None else \
            replace(head, duel=fit_duel_on_folds([*outputs[:k], *outputs[k + 1:]], head))
        a, c, r = served_from_outputs(out, fold_head)
        answers.append(a)
        conf.append(c)
        rejected.append(r)
        truth.append(out["y"])
    if not answers:
        return {}
    a, c, r, y = (np.concatenate(v) for v in (answers, conf, rejected, truth))
    keep = ~r
    return {"gestures_accepted": float(keep.mean()), **confidence_quality(c[keep], a[keep] == y[keep]),
            "risk_coverage": risk_coverage(c[keep], a[keep] == y[keep])}


def choose_no_gesture_min(loso: dict[str, Any] | None, head: OpenSetHead, target: float) -> float | None:
    """The smallest P(no_gesture) cut (on a fixed grid) that still answers at least `target` of a new
    person's true gestures with a gesture, measured on the leave-one-source-out folds (with the
    distance threshold); None (answer it when it is the most likely class) without folds or a
    trained class, or when no cut keeps `target`."""
    if not loso or not loso.get("outputs") or NO_GESTURE not in list(loso["outputs"][0]["classes"]):
        return None
    for t in NO_GESTURE_GRID:
        trial = OpenSetHead(head.beta, head.pca_mean, head.pca_components, head.reference, head.threshold,
                            head.known_quantiles, None, head.coupling, float(t))
        rejected = np.concatenate([served_from_outputs(out, trial)[2] for out in loso["outputs"]])
        if 1.0 - rejected.mean() >= target:
            return float(t)
    return None


NO_GESTURE_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def no_gesture_tradeoff(loso: dict[str, Any], head: OpenSetHead, clf: GestureClassifier,
                        natural: np.ndarray) -> list[dict[str, float]]:
    """The `no_gesture` rule moved along P(no_gesture) >= t (plus the distance threshold): a new
    person's true gestures still answered (leave-one-source-out folds) against `natural` hands
    (people never trained on) answered `no_gesture`, one point per t."""
    if NO_GESTURE not in clf.classes or not loso.get("outputs"):
        return []
    ng = list(clf.classes).index(NO_GESTURE)
    p_nat = clf.predict_proba(natural)[:, ng]
    far_nat = clf.ood_scores(natural) > head.threshold
    p_fold, far_fold = [], []
    for out in loso["outputs"]:
        classes = list(out["classes"])
        proba = softmax(np.log(pairwise_coupling(out["ovo"], len(classes), *head.coupling)), head.beta) \
            if "ovo" in out and head.coupling is not None else out.get("proba")
        if proba is None:
            return []
        p_fold.append(proba[:, classes.index(NO_GESTURE)])
        far_fold.append(out["distance"] > head.threshold)
    p_g, far_g = np.concatenate(p_fold), np.concatenate(far_fold)
    return [{"t": float(t), "gestures_accepted": float(np.mean(~((p_g >= t) | far_g))),
             "natural_rejected": float(np.mean((p_nat >= t) | far_nat))}
            for t in NO_GESTURE_GRID]


# -------------------------------------------------------------------------------------------- open set
@dataclass
class OpenSetFit:
    head: OpenSetHead
    chosen: TradeOff
    curve: list[TradeOff]
    known_val: np.ndarray
    negatives_val: np.ndarray | None
    accepted_val: float  # validation gestures still answered a gesture, known non-gestures included


def fit_openset(ctx: Context, model: Any, train_idx: np.ndarray, min_accept: float) -> OpenSetFit:
    """Temperature and `no_gesture` threshold for `model` (fitted on `train_idx` + mirrors only): both
    are chosen on rows it never saw, the validation split and the validation half of the negatives."""
    d, s = ctx.data, ctx.split
    clf = _wrap(model, "openset")
    X_tr, _ = with_mirrored(d, train_idx)
    head = OpenSetHead.fit_reference(clf.scaled(X_tr))
    # Calibration rows: the validation split, and the validation people's natural hands when the
    # model has a trained no_gesture class.
    X_cal, y_cal = d.X[s.val], d.y[s.val]
    trained_reject = NO_GESTURE in model.classes_
    if trained_reject and ctx.natural is not None:
        X_nat = ctx.natural.rows("val")
        X_cal, y_cal = np.vstack([X_cal, X_nat]), np.concatenate([y_cal, np.full(len(X_nat), NO_GESTURE)])
    index = _label_index(model, y_cal)
    if _is_svm(model):
        head.coupling = fit_pairwise_sigmoid(clf.pairwise_decisions(X_cal), index, len(model.classes_))
        head.beta = fit_temperature(np.log(_coupled(clf, X_cal, head.coupling)), index)
    else:
        head.beta = fit_temperature(clf.class_scores(X_cal), index)
    known = head.ood_scores(clf.scaled(d.X[s.val]))
    neg = head.ood_scores(clf.scaled(ctx.negatives.val)) if ctx.negatives is not None else None
    chosen = choose_threshold(known, neg, min_accept)
    head.set_threshold(known, chosen.threshold)
    curve = trade_off_curve(known, neg) if neg is not None else []
    if ctx.negatives is not None and not trained_reject:  # the half also serves as known non-gestures
        head = head.with_negatives(clf.scaled(ctx.negatives.known(include_test=False)))
    accepted = float(1.0 - np.mean(_wrap(model, "openset", head).rejects(d.X[s.val])))
    return OpenSetFit(head, chosen, curve, known, neg, accepted)


def _log_openset(mlflow: Any, fit: OpenSetFit, tmp: Path) -> None:
    mlflow.log_metrics({"ood_threshold": fit.chosen.threshold, "ood_val_accepted": fit.chosen.accepted,
                        "ood_val_accepted_with_known_negatives": fit.accepted_val,
                        "temperature_beta": fit.head.beta}
                       | ({"ood_val_negatives_rejected": fit.chosen.rejected} if fit.curve else {}))
    if fit.curve:
        mlflow.log_dict([vars(p) for p in fit.curve], "ood_tradeoff_validation.json")
        png = tradeoff_png(fit.curve, fit.chosen, tmp / "ood_tradeoff_validation.png",
                           "no_gesture threshold (validation gestures vs held-out negatives)")
        mlflow.log_artifact(str(png))


def evaluate_open_set(clf: GestureClassifier, X_known: np.ndarray,
                      X_neg: np.ndarray | None) -> dict[str, float]:
    """Share of true gestures still answered with a gesture, share of non-gestures answered no_gesture."""
    out = {"known_accepted": float(1.0 - np.mean(clf.rejects(X_known)))}
    if X_neg is not None and len(X_neg):
        out["negatives_rejected"] = float(np.mean(clf.rejects(X_neg)))
        out["negatives_rejected_by_distance"] = float(np.mean(clf.ood_scores(X_neg) > clf.openset.threshold))
        out["negatives"] = len(X_neg)
    return out


# ---------------------------------------------------------------------------------------------- final
def _champion_f1(client: Any, tracking_uri: str, X_test: np.ndarray, y_test: np.ndarray,
                 labels: list[str]) -> tuple[str | None, float | None]:
    champ = current_champion(client)
    if champ is None:
        return None, None
    try:
        clf = load_registered(REGISTERED_MODEL_NAME, str(champ.version), tracking_uri=tracking_uri)
    except ModelLoadError as exc:
        print(f"current champion v{champ.version} cannot be loaded ({exc}); treating it as beaten")
        return str(champ.version), None
    classes = np.asarray(clf.classes)  # closed-set, scored as the new model is (`_predict`)
    scores = np.where(classes[None, :] == NO_GESTURE, -np.inf, clf.class_scores(X_test))
    pred = classes[np.argmax(scores, axis=1)]
    return str(champ.version), score(y_test, pred, labels).f1_macro


def _cap_param(ctx: Context) -> str:
    """How many no_gesture hands the fits had, as logged for `retrain`: none, all, or the cap."""
    return "none" if ctx.natural is None else str(ctx.no_gesture_cap or "all")


def read_heldout(args: argparse.Namespace) -> LandmarkDataset | None:
    paths = _csv_paths(getattr(args, "heldout", None), DEFAULT_HELDOUT_DIR, False)
    return read_datasets(paths) if paths else None


def _previous_default(args: argparse.Namespace) -> GestureClassifier | None:
    """The model directory about to be replaced (or the committed default), to be scored beside the
    new model in the same run."""
    from model.classifier import load_directory

    directory = Path(args.out_default) if args.out_default else DEFAULT_OUT
    try:
        return load_directory(directory, source="previous default")
    except ModelLoadError as exc:
        print(f"no previous default to compare with ({exc})")
        return None


def _loggable(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "outputs"}


def served(clf: GestureClassifier, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What `predict` answers for every row (gesture or `no_gesture`) and the confidence it serves."""
    answers = [clf.predict(x) for x in X]
    return (np.array([p.gesture for p in answers]),
            np.array([p.confidence for p in answers], dtype=np.float64))


def served_quality(clf: GestureClassifier, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The served answers' figures on true gestures: share answered with a gesture, and the served
    confidence's quality on those answers (right = the true gesture)."""
    answer, conf = served(clf, X)
    keep = answer != NO_GESTURE
    right = answer[keep] == y[keep]
    return {"gestures_accepted": float(keep.mean()), **confidence_quality(conf[keep], right),
            "risk_coverage": risk_coverage(conf[keep], right)}


def confidence_report(clf: GestureClassifier, previous: GestureClassifier | None, ctx: Context,
                      heldout: LandmarkDataset | None, loso: dict[str, Any] | None,
                      head: OpenSetHead) -> dict[str, Any]:
    """The served confidence and the `no_gesture` answer, new model beside the previous default, on:
    the test split, HaGRID's held-out people, the leave-one-source-out folds (new model only: the
    folds are refits of the new configuration), natural hands of people never trained on and the
    recorded negatives' reporting half."""
    d, s = ctx.data, ctx.split

    def few(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:  # a smoke run scores 200 rows of each set
        keep = np.random.default_rng(0).permutation(len(arrays[0]))[:200] if ctx.quick else slice(None)
        return tuple(a[keep] for a in arrays)

    sets: dict[str, tuple[np.ndarray, ...]] = {"test": few(d.X[s.test], d.y[s.test])}
    if heldout is not None:
        sets["heldout_people"] = few(features_from_xy(heldout.xy), heldout.labels)
    report: dict[str, Any] = {"shipped": {}, "previous": {}}
    for name, model in (("shipped", clf), ("previous", previous)):
        if model is None:
            continue
        for set_name, (X, y) in sets.items():
            report[name][set_name] = served_quality(model, X, y)
        if ctx.natural is not None:
            answers = served(model, few(ctx.natural.rows("test"))[0])[0]
            report[name]["natural_rejected"] = float(np.mean(answers == NO_GESTURE))
        if ctx.negatives is not None:
            answers = served(model, few(ctx.negatives.test)[0])[0]
            report[name]["negatives_rejected"] = float(np.mean(answers == NO_GESTURE))
    if loso:
        report["shipped"]["loso"] = loso_confidence(loso, head)
        if previous is not None and previous.openset is not None and any("ovr" in o for o in loso["outputs"]):
            # The previous default's confidence method (a temperature over the one-vs-rest votes, its
            # own beta) on the same folds: the folds are refits of the new configuration.
            votes = OpenSetHead(previous.openset.beta, head.pca_mean, head.pca_components, head.reference,
                                head.threshold, head.known_quantiles)
            report["previous"]["loso_votes_method"] = loso_confidence(loso, votes)
        if head.duel is not None:  # the coupled probability as the confidence, on the same folds
            report["previous"]["loso_coupled_method"] = loso_confidence(loso, replace(head, duel=None))
        if ctx.natural is not None:
            report["no_gesture_tradeoff"] = no_gesture_tradeoff(loso, head, clf, ctx.natural.rows("test"))
    return report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its curves (metadata.json)."""
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "risk_coverage"}
        return v
    return strip({k: v for k, v in report.items() if k != "no_gesture_tradeoff"})


def _log_confidence(mlflow: Any, report: dict[str, Any], tmp: Path) -> None:
    """Metrics (`conf_<model>_<set>_<figure>`), the risk-coverage curves (PNG + JSON) and the
    natural-hands trade-off curve."""
    metrics: dict[str, float] = {}
    curves: dict[str, list[dict[str, float]]] = {}
    for who in ("shipped", "previous"):
        for set_name, v in report.get(who, {}).items():
            if isinstance(v, dict):
                for k, x in v.items():
                    if isinstance(x, float) and np.isfinite(x):
                        metrics[f"conf_{who}_{set_name}_{k}"] = x
                if v.get("risk_coverage"):
                    curves[f"{who}: {set_name}"] = v["risk_coverage"]
            elif isinstance(v, float):
                metrics[f"conf_{who}_{set_name}"] = v
    mlflow.log_metrics(metrics)
    mlflow.log_dict(curves, "risk_coverage.json")
    if curves:
        title = "served confidence: accuracy of the most confident answers"
        mlflow.log_artifact(str(risk_coverage_png(curves, tmp / "risk_coverage.png", title)))
    if report.get("no_gesture_tradeoff"):
        mlflow.log_dict(report["no_gesture_tradeoff"], "no_gesture_tradeoff.json")
    mlflow.log_dict(_summary(report), "confidence_report.json")
    for who in ("shipped", "previous"):
        for set_name, v in report.get(who, {}).items():
            if isinstance(v, dict):
                print(f"  {who:8} {set_name:15} accepted {v.get('gestures_accepted', float('nan')):.3f}  "
                      f"acc {v['accuracy']:.4f}  AUROC {v['auroc']:.3f}  "
                      f"acc@80% {v['accuracy_at_80_coverage']:.4f}  ECE {v['ece']:.3f}  "
                      f"Brier {v['brier']:.4f} (resolution {v['resolution']:.4f})  median right "
                      f"{v['median_confidence_right']:.3f} wrong {v['median_confidence_wrong']:.3f}")
            else:
                print(f"  {who:8} {set_name:15} {v:.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # MLflow probes git; there may be none
    import mlflow
    from mlflow.tracking import MlflowClient

    started = time.perf_counter()
    data_dir = Path(args.data_dir or default_data_dir(os.environ)).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = args.tracking_uri or default_tracking_uri(data_dir, os.environ)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    loaded = load_split_data(args)
    data, sp = loaded.data, loaded.split
    negatives = Negatives.read(negative_paths(args))
    if negatives is not None:
        print(f"negatives ({NO_GESTURE}): {len(negatives.val)} rows to choose the threshold, "
              f"{len(negatives.test)} to report it, from {len(negatives.files)} file(s)")
    natural = NaturalHands.read(natural_paths(args))
    if natural is not None:
        print(f"natural hands ({NO_GESTURE} class, split by person): "
              + ", ".join(f"{p} {int(np.sum(natural.part == p))}" for p in ("train", "val", "test")))
    heldout = read_heldout(args)
    previous = _previous_default(args)
    labels = sorted(set(data.y.tolist()))
    fingerprint = loaded.fingerprint()
    if natural is not None:
        fingerprint["natural"] = {"files": [Path(f).name for f in natural.files], "rows": len(natural.X),
                                  **{p: int(np.sum(natural.part == p)) for p in ("train", "val", "test")}}
    augmentation = augmentation_of(args)
    ctx = Context(data, sp, labels, fingerprint, args.quick, negatives, augmentation, natural,
                  QUICK_NO_GESTURE_CAP if args.quick else None)
    run_loso = not args.quick and not args.no_loso
    train_idx = _quick_subset(data, sp.train, 150) if args.quick else sp.train
    sweep_idx = _subsample(data, train_idx, args.sweep_rows)
    print(f"split: train={len(sp.train)} val={len(sp.val)} test={len(sp.test)} (stratified, seed fixed); "
          f"sweep trains on {len(sweep_idx)} rows x {augmentation.factor} (mirrors, "
          f"{augmentation.rotated_copies} rotated cop{'y' if augmentation.rotated_copies == 1 else 'ies'} "
          f"within +-{augmentation.max_degrees:g} degrees)")
    print(f"tracking: {tracking_uri}  experiment: {args.experiment}")

    experiment_id = ensure_experiment(client, args.experiment, data_dir)
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_name=f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}") as parent, \
            tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mlflow.set_tags({**_fingerprint_tags(ctx), "stage": "parent"})
        mlflow.log_params({"data_files": ",".join(fingerprint["files"]), "quick": args.quick,
                           "sweep_rows": len(sweep_idx), "split_train": len(sp.train),
                           "split_val": len(sp.val), "split_test": len(sp.test)})
        mlflow.log_dict(fingerprint, "data_fingerprint.json")
        mlflow.log_dict({k: int(v) for k, v in Counter(data.y.tolist()).items()}, "class_counts.json")

        ablation_results = None if args.quick or args.no_ablation else ablation(ctx, mlflow, sweep_idx)
        candidates = [parse_candidate(args.candidate)] if args.candidate else sweep(args.quick)
        entries = run_sweep(ctx, mlflow, candidates, sweep_idx, loso=run_loso)
        table = leaderboard(entries)
        print("\nLeaderboard (validation split after the temperature; LOSO = leave-one-source-out pooled "
              "accuracy; ranked by val F1 + LOSO; p50 ms = single-sample predict):")
        print(table)
        print("\nBest per family:\n" + leaderboard(family_best(entries)))
        mlflow.log_text(table, "leaderboard.txt")
        mlflow.log_dict([{"model": e.name, "family": e.family, "val_accuracy": e.accuracy,
                          "val_f1_macro": e.f1_macro, "val_f1_min": e.f1_min, "train_s": e.train_s,
                          "val_ece": e.ece, "loso_pooled_accuracy": e.loso,
                          "latency_p50_ms": e.latency_ms, "run_id": e.run_id} for e in entries],
                        "leaderboard.json")

        best = max(entries, key=lambda e: e.selection_score)
        cand: Candidate = best.extra["candidate"]
        selected_by = "val_f1_macro+loso_pooled_accuracy" if run_loso else "val_f1_macro"
        final_idx = np.sort(np.concatenate([train_idx, sp.val]))
        X_fin, y_fin, hands_fin = ctx.fit_rows(final_idx, final=True)
        X_ref, y_ref = as_recorded(X_fin, len(final_idx)), as_recorded(y_fin, len(final_idx))
        X_test, y_test = data.X[sp.test], data.y[sp.test]
        with mlflow.start_run(run_name=f"final-{cand.name}", nested=True) as final_run:
            mlflow.set_tags({**_fingerprint_tags(ctx), "family": cand.family, "stage": "final"})
            mlflow.log_params({"family": cand.family, **cand.params, "train_rows": len(y_fin),
                               "selected_by": selected_by, **augmentation.params(),
                               "min_accept": args.min_accept, "loso_accept": args.loso_accept,
                               "no_gesture_cap": _cap_param(ctx),
                               "negatives_files": ",".join(Path(f).name for f in (negatives.files if negatives
                                                                                   else ()))})
            # The head is fitted with the winner trained on train only (validation unseen), then
            # carried over to the refit on train+val; its reference rows become the refit's rows.
            head_model, _ = _fit(cand, *ctx.fit_rows(sweep_idx)[:2])
            open_fit = fit_openset(ctx, head_model, sweep_idx, args.min_accept)
            model, fit_s = _fit(cand, X_fin, y_fin)
            clf = _wrap(model, cand.name)
            head = open_fit.head.with_reference(clf.scaled(X_ref))
            loso = best.extra.get("loso")
            head.no_gesture_min = choose_no_gesture_min(loso, head, args.loso_accept)
            # A new person's answers calibrate the served confidence (decision 0026).
            head.duel = fit_duel_on_folds(loso.get("outputs", []), head) if loso else None
            clf = _wrap(model, cand.name, head)
            expansion = compile_expansion(clf, args.expansion_size, data.X[sp.val])
            clf.use_expansion(expansion)  # every served figure below is what the server will serve
            pred = _predict(model, X_test)  # the one look at the test split (closed set)
            test = score(y_test, pred, labels)
            served_test = served(clf, X_test)
            test_ece = expected_calibration_error(served_test[1], served_test[0] == y_test)
            test_m = score(y_test, _predict(model, mirrored_features(data, sp.test)), labels)
            open_test = evaluate_open_set(clf, X_test, negatives.test if negatives else None)
            if negatives is not None and NO_GESTURE not in clf.classes:  # shipped head knows them all
                head = head.with_negatives(clf.scaled(negatives.known(include_test=True)))
                clf = _wrap(model, cand.name, head, expansion)
            expansion_agreement = expansion and {
                "validation": expansion.agreement, "test": clf.agreement(X_test, expansion),
                **({"heldout": clf.agreement(features_from_xy(heldout.xy), expansion)} if heldout else {})}
            if expansion_agreement:
                mlflow.log_metrics({f"expansion_agreement_{k}": v for k, v in expansion_agreement.items()})
            report = confidence_report(clf, previous, ctx, heldout, loso, head)
            _log_confidence(mlflow, report, tmp)
            latency = single_sample_latency(clf.predict, X_test)
            mlflow.log_metrics({"train_time_s": fit_s, "latency_p50_ms": latency.p50_ms,
                                "latency_p95_ms": latency.p95_ms, "mirrored_test_f1_macro": test_m.f1_macro,
                                "mirrored_test_accuracy": test_m.accuracy, "test_ece": test_ece,
                                **{f"ood_test_{k}": float(v) for k, v in open_test.items()}})
            _log_scores(mlflow, test, "test_", f"{cand.name} (test split)", tmp)
            _log_openset(mlflow, open_fit, tmp)
            reliability = reliability_table(served_test[1], served_test[0] == y_test)
            mlflow.log_dict(reliability, "reliability_test.json")
            mlflow.log_artifact(str(reliability_png(served_test[1], served_test[0] == y_test,
                                                    tmp / "reliability_test.png",
                                                    f"{cand.name}: reliability on the test split")))
            head_path = head.save(tmp / OPENSET_FILE)
            _log_model(mlflow, model, X_test, ctx, openset=head_path,
                       expansion=expansion and expansion.save(tmp / EXPANSION_FILE))
            drift.log_reference(mlflow, X_ref, y_ref)  # drift monitoring's baseline (model/drift.py)
            final_run_id = final_run.info.run_id

        print(f"\nFinal: {cand.name} refitted on train+val ({len(y_fin)} rows incl. mirrored and rotated), "
              f"test split ({len(y_test)} rows): accuracy {test.accuracy:.4f}  macro-F1 {test.f1_macro:.4f}  "
              f"min class F1 {min(test.per_class_f1.values()):.4f}  p50 {latency.p50_ms:.3f} ms "
              f"(p95 {latency.p95_ms:.3f}); mirrored test: acc {test_m.accuracy:.4f} "
              f"F1 {test_m.f1_macro:.4f}; ECE {test_ece:.4f} (temperature beta {head.beta:.3f})")
        print(f"no_gesture threshold {head.threshold:.4f} (validation: {open_fit.chosen.accepted:.3f} of "
              f"gestures accepted, {open_fit.chosen.rejected:.3f} of negatives rejected by distance; "
              f"{open_fit.accepted_val:.3f} accepted with the known non-gestures too); test: "
              + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in open_test.items()))
        print("per-class test F1: " + ", ".join(f"{k}={v:.3f}" for k, v in test.per_class_f1.items()))
        print("largest confusions (true -> predicted: n): "
              + ", ".join(f"{t}->{p}: {n}" for t, p, n in test.top_confusions(6)))

        champ_version, champ_f1 = _champion_f1(client, tracking_uri, X_test, y_test, labels)
        version = register(client, final_run_id, "model",
                           {**_fingerprint_tags(ctx), "test_f1_macro": f"{test.f1_macro:.4f}"})
        promoted = champ_version is None or champ_f1 is None or test.f1_macro > champ_f1
        if promoted:
            set_champion(client, version)
        verdict = (f"champion -> v{version}" if promoted else f"champion stays v{champ_version}")
        champ_text = "none" if champ_version is None else f"v{champ_version} test macro-F1 {champ_f1}"
        print(f"registered {REGISTERED_MODEL_NAME} v{version}; previous champion: {champ_text}; {verdict}")
        mlflow.log_metrics({"test_accuracy": test.accuracy, "test_f1_macro": test.f1_macro,
                            "promoted": float(promoted)})
        mlflow.set_tags({"registered_version": version, "champion_after": version if promoted
                         else str(champ_version)})

        if loso is not None:  # measured in the sweep
            print(f"\nLeave-one-source-out ({cand.name}; "
                  "held-out source's rows of classes other sources also have):")
            for source, r in loso["per_source"].items():
                print(f"  {source[:58]:<58} rows={r['rows']:>5} acc={r['accuracy']:.4f} "
                      f"F1={r['f1_macro']:.4f}")
            print(f"  pooled accuracy {loso['pooled_accuracy']:.4f}, mean per source accuracy "
                  f"{loso['mean_accuracy']:.4f}, mean macro-F1 {loso['mean_f1_macro']:.4f}")
            mlflow.log_dict(_loggable(loso), "leave_one_source_out.json")
            mlflow.log_metrics({"loso_pooled_accuracy": loso["pooled_accuracy"],
                                "loso_mean_accuracy": loso["mean_accuracy"]})

        if args.out_default:
            metadata = {
                "name": "default",
                "version": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
                "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "model": cand.name,
                "feature_version": FEATURE_VERSION,
                "classes": [str(c) for c in model.classes_],
                "data": fingerprint,
                "split": {"train+val": len(final_idx), "test": len(sp.test), **augmentation.params()},
                "metrics": {"test": {k: round(v, 5) for k, v in test.metrics().items()},
                            "test_ece": round(test_ece, 5),
                            "mirrored_test_f1_macro": round(test_m.f1_macro, 5),
                            "latency_p50_ms": round(latency.p50_ms, 4)},
                "selected_by": selected_by,
                "openset": {**head.summary(),
                            "score": "nearest training row, PCA-16 of standardised features",
                            "min_accept": args.min_accept, "loso_accept": args.loso_accept,
                            "validation": {"gestures_accepted": open_fit.chosen.accepted,
                                           "negatives_rejected": open_fit.chosen.rejected,
                                           "gestures_accepted_with_known_negatives": open_fit.accepted_val},
                            "test": open_test,
                            "negatives_files": [Path(f).name for f in negatives.files] if negatives else []},
                "leave_one_source_out": loso and {k: loso[k] for k in loso
                                                  if k not in ("per_source", "outputs")},
                "confidence": _summary(report),
                "expansion": expansion_agreement and {
                    "size": expansion.size, "agreement": expansion_agreement, "min_agreement": MIN_AGREEMENT},
                "ablation": ablation_results,
                "mlflow": {"run_id": final_run_id, "registered_version": version},
                "libraries": library_versions(),
            }
            out = write_model_dir(model, Path(args.out_default), metadata, hands_fin)
            drift.write_reference(out, X_ref, y_ref)
            head.save(out / OPENSET_FILE)
            if expansion is not None:
                expansion.save(out / EXPANSION_FILE)
            size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
            print(f"default model written to {out} ({size:.2f} MB)")
        print(f"\nparent run {parent.info.run_id}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
