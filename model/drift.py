"""Drift: how far live hands (and frames) are from what the served model was trained on.

Reference statistics are computed from a model's training features when it is trained
(`reference_stats`, hooked into `model.train`): per feature, quantile bin edges and the share of
training rows in each bin — overall and per class — plus the central 99 % range per class. They are
saved with the model (`drift_reference.json`: an MLflow artifact of the final run, and a file in the
default model's directory).

Live statistics compare a window of recent frames with that reference (`compare`):

* PSI (population stability index) per feature. The expected distribution is the mixture of the
  per-class references weighted by how often each class was predicted in the window, so a player
  who happens to hold only `palm` is not "drift" (label shift); hands that look unlike their
  class's training rows are (covariate shift).
* KS (Kolmogorov-Smirnov) per feature against the same mixture (CDF interpolated from the reference
  quantiles).
* out-of-range share: the fraction of live feature values outside their predicted class's central
  99 % training range (about 1 % for training-like hands). It stays meaningful for the narrow
  window of one person, where PSI and KS are high even for good hands.
* input quality: PSI of frame brightness and sharpness against `model/input_quality_reference.json`.

Everything here is numpy over small arrays (window of a few hundred frames x 307 features): tens of ms,
run by the server on a timer in a worker thread, never per frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from model.features import FEATURE_VERSION, N_FEATURES, N_LANDMARKS

REFERENCE_FILE = "drift_reference.json"
QUALITY_FILE = "input_quality_reference.json"
# Bin edges at these training quantiles: narrow tail bins make "in the far tail" count for a lot.
EDGE_QUANTILES = (0.005, 0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975, 0.995)
KS_LEVELS = np.linspace(0.0, 1.0, 21)  # every 5 %: KS to within the interpolation
RANGE = (0.005, 0.995)  # the central 99 % per class, for the out-of-range share
_EPS = 1e-4  # floor for bin shares in PSI (an empty bin would make it infinite)


def feature_names() -> list[str]:
    """Names of the `model.features` columns, for metric labels (block by block, see BLOCKS):
    x0..y20, cos_a_b_c, dist_a_b, dir_a_b_x/_y."""
    from model.features import _BONES, _JOINTS, _PAIRS

    names = [n for i in range(N_LANDMARKS) for n in (f"x{i}", f"y{i}")]  # features interleave x,y
    names += [f"cos_{a}_{b}_{c}" for a, b, c in _JOINTS]
    names += [f"dist_{a}_{b}" for a, b in _PAIRS]
    names += [f"dir_{a}_{b}_{axis}" for a, b in _BONES for axis in ("x", "y")]
    return names


# ------------------------------------------------------------------------------------------ binning
def _edges(values: np.ndarray) -> list[np.ndarray]:
    """Per feature: the distinct inner edges at EDGE_QUANTILES (constant features get none)."""
    q = np.quantile(values, EDGE_QUANTILES, axis=0)  # (n_edges, n_features)
    return [np.unique(q[:, j]) for j in range(values.shape[1])]


def _shares(values: np.ndarray, edges: list[np.ndarray]) -> list[np.ndarray]:
    """Per feature: the share of `values` rows in each bin (len(edges) + 1 bins)."""
    n = max(1, len(values))
    out = []
    for j, e in enumerate(edges):
        idx = np.searchsorted(e, values[:, j], side="right")
        out.append(np.bincount(idx, minlength=len(e) + 1) / n)
    return out


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), _EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


# ---------------------------------------------------------------------------------------- reference
def reference_stats(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """JSON-ready reference of training features `X` (N, n_features) with labels `y`."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(str)
    edges = _edges(X)
    classes = sorted(set(y.tolist()))
    per_class = {}
    for c in classes:
        rows = X[y == c]
        per_class[c] = {
            "rows": len(rows),
            "shares": [s.round(5).tolist() for s in _shares(rows, edges)],
            "quantiles": np.quantile(rows, KS_LEVELS, axis=0).T.round(5).tolist(),
            "range": np.quantile(rows, RANGE, axis=0).T.round(5).tolist(),
        }
    return {
        "kind": "gesture-maze/drift-reference",
        "version": 1,
        "feature_version": FEATURE_VERSION,
        "features": feature_names(),
        "rows": len(X),
        "edges": [e.round(5).tolist() for e in edges],
        "overall": [s.round(5).tolist() for s in _shares(X, edges)],
        "classes": per_class,
    }


@dataclass
class Reference:
    """A parsed reference, with arrays ready for `compare`."""

    features: list[str]
    edges: list[np.ndarray]
    class_shares: dict[str, list[np.ndarray]]
    class_quantiles: dict[str, np.ndarray]  # (n_features, levels)
    class_range: dict[str, np.ndarray]  # (n_features, 2)
    overall: list[np.ndarray]
    quality: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        if data.get("kind") != "gesture-maze/drift-reference" or data.get("feature_version") != \
                FEATURE_VERSION:
            raise ValueError("not a drift reference for these features")
        classes = data["classes"]
        return cls(
            features=list(data["features"]),
            edges=[np.asarray(e, dtype=np.float64) for e in data["edges"]],
            class_shares={c: [np.asarray(s) for s in v["shares"]] for c, v in classes.items()},
            class_quantiles={c: np.asarray(v["quantiles"], dtype=np.float64) for c, v in classes.items()},
            class_range={c: np.asarray(v["range"], dtype=np.float64) for c, v in classes.items()},
            overall=[np.asarray(s) for s in data["overall"]],
            quality=default_quality_reference(),  # about cameras, not models: one shipped file
        )


def write_reference(directory: Path, X: np.ndarray, y: np.ndarray) -> Path:
    path = Path(directory) / REFERENCE_FILE
    path.write_text(json.dumps(reference_stats(X, y), separators=(",", ":")) + "\n")
    return path


def log_reference(mlflow: Any, X: np.ndarray, y: np.ndarray) -> None:
    """The training hook: the final run gets `drift_reference.json` as an artifact."""
    mlflow.log_dict(reference_stats(X, y), REFERENCE_FILE)


def load_reference_file(path: Path) -> Reference | None:
    try:
        return Reference.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError):
        return None


def load_reference_for(info: Any, tracking_uri: str | None) -> Reference | None:
    """The reference saved with the model described by `info` (a `ModelInfo`), or None. Blocking."""
    source = str(info.source)
    if source == "default":
        return load_reference_file(Path(str(resources.files("model") / "default")) / REFERENCE_FILE)
    if not source.startswith("models:/"):
        return load_reference_file(Path(source.removeprefix("file://")) / REFERENCE_FILE)
    try:
        from mlflow.artifacts import download_artifacts
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        run_id = client.get_model_version(info.name, str(info.version)).run_id
        import tempfile

        with tempfile.TemporaryDirectory(prefix="drift-ref-") as tmp:
            local = download_artifacts(run_id=run_id, artifact_path=REFERENCE_FILE, dst_path=tmp,
                                       tracking_uri=tracking_uri)
            return load_reference_file(Path(local))
    except Exception:  # an older model without a reference: drift is simply not reported
        return None


# ---------------------------------------------------------------------------------- input quality
def default_quality_reference() -> dict[str, Any]:
    """Brightness/sharpness bins and shares of the reference frames (see QUALITY_FILE's provenance)."""
    return json.loads((Path(str(resources.files("model"))) / QUALITY_FILE).read_text(encoding="utf-8"))


def quality_reference(brightness: np.ndarray, sharpness: np.ndarray, provenance: str) -> dict[str, Any]:
    out: dict[str, Any] = {"provenance": provenance, "frames": len(brightness)}
    for name, values in (("brightness", brightness), ("sharpness", sharpness)):
        values = np.asarray(values, dtype=np.float64)[:, None]
        edges = _edges(values)
        shares = _shares(values, edges)[0]
        out[name] = {"edges": edges[0].round(4).tolist(), "shares": shares.round(5).tolist()}
    return out


# --------------------------------------------------------------------------------------- live side
@dataclass(frozen=True)
class DriftReport:
    psi: np.ndarray  # (n_features,)
    ks: np.ndarray  # (n_features,)
    out_of_range: float  # share of live values outside their class's central 99 %
    class_psi: dict[str, float]  # mean feature PSI of frames predicted as each class (>= 20 frames)
    brightness_psi: float | None
    sharpness_psi: float | None
    hands: int
    frames: int
    features_compared: bool = False  # enough hands in the window (min_hands)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.features_compared:
            out.update(out_of_range=self.out_of_range, features_psi_mean=float(np.mean(self.psi)),
                       features_psi_max=float(np.max(self.psi)), features_ks_max=float(np.max(self.ks)),
                       features_ks_mean=float(np.mean(self.ks)))
        if self.brightness_psi is not None:
            out["brightness_psi"] = self.brightness_psi
        if self.sharpness_psi is not None:
            out["sharpness_psi"] = self.sharpness_psi
        return out


def _ks(quantiles: np.ndarray, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per feature KS distance between live `values` (n, f) and the mixture of class CDFs."""
    n, f = values.shape
    out = np.empty(f)
    for j in range(f):
        v = np.sort(values[:, j])
        # Both CDFs just at and just below every live value (ties and steps handled exactly).
        ref_at, ref_below = np.zeros(n), np.zeros(n)
        for q, w in zip(quantiles, weights, strict=True):
            qs = q[j]
            if qs[-1] - qs[0] <= 1e-12:  # constant in training: a step at that value
                ref_at += w * (v >= qs[0])
                ref_below += w * (v > qs[0])
            else:
                smooth = np.interp(v, qs, KS_LEVELS, left=0.0, right=1.0)
                ref_at += w * smooth
                ref_below += w * smooth
        live_at = np.searchsorted(v, v, side="right") / n
        live_below = np.searchsorted(v, v, side="left") / n
        out[j] = float(max(np.max(np.abs(live_at - ref_at)), np.max(np.abs(live_below - ref_below))))
    return out


def compare(
    reference: Reference,
    features: np.ndarray,
    predicted: list[str],
    brightness: np.ndarray,
    sharpness: np.ndarray,
    *,
    min_hands: int = 50,
) -> DriftReport:
    """Live window vs reference. `features` (n, f) with the class each row was predicted as."""
    features = np.asarray(features, dtype=np.float64).reshape(-1, N_FEATURES)
    labels = np.asarray(predicted).astype(str) if len(predicted) else np.empty(0, dtype=str)
    known = np.isin(labels, list(reference.class_shares)) if len(labels) else np.zeros(0, bool)
    features, labels = features[known], labels[known]
    n = len(features)
    zeros = np.zeros(N_FEATURES)
    psi_values, ks_values, out_of_range, class_psi = zeros, zeros, 0.0, {}
    if n >= max(1, min_hands):
        classes, counts = np.unique(labels, return_counts=True)
        weights = counts / n
        live = _shares(features, reference.edges)
        expected = [sum(w * reference.class_shares[c][j] for c, w in zip(classes, weights, strict=True))
                    for j in range(N_FEATURES)]
        psi_values = np.array([psi(e, a) for e, a in zip(expected, live, strict=True)])
        ks_values = _ks([reference.class_quantiles[c] for c in classes], weights, features)
        lo = np.stack([reference.class_range[c][:, 0] for c in labels])
        hi = np.stack([reference.class_range[c][:, 1] for c in labels])
        out_of_range = float(np.mean((features < lo - 1e-9) | (features > hi + 1e-9)))
        for c, count in zip(classes, counts, strict=True):
            if count >= 20:
                rows = _shares(features[labels == c], reference.edges)
                class_psi[str(c)] = float(np.mean([psi(e, a) for e, a in
                                                   zip(reference.class_shares[c], rows, strict=True)]))
    q = reference.quality
    b_psi = s_psi = None
    if len(brightness) >= max(1, min_hands):
        b_psi = _quality_psi(q["brightness"], brightness)
        s_psi = _quality_psi(q["sharpness"], sharpness)
    return DriftReport(psi_values, ks_values, out_of_range, class_psi, b_psi, s_psi, n, len(brightness),
                       n >= max(1, min_hands))


def _quality_psi(ref: dict[str, Any], values: np.ndarray) -> float:
    edges = [np.asarray(ref["edges"], dtype=np.float64)]
    live = _shares(np.asarray(values, dtype=np.float64)[:, None], edges)[0]
    return psi(np.asarray(ref["shares"]), live)


# ------------------------------------------------------------------------------------------- CLI
def _main(argv: list[str] | None = None) -> int:
    """Regenerate the shipped references (documented in docs/monitoring.md)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m model.drift", description=_main.__doc__)
    p.add_argument("--default-model", metavar="CSV", nargs="+",
                   help="write model/default/drift_reference.json from the default model's training rows "
                   "(train+val of these landmark CSVs, mirrored, as `gesture-maze train` fits them)")
    p.add_argument("--quality", metavar="IMAGE", nargs="+",
                   help=f"write model/{QUALITY_FILE} from these photos (jittered like webcam frames)")
    args = p.parse_args(argv)
    here = Path(__file__).resolve().parent
    if args.quality:
        import cv2

        from model.frames import frame_stats

        rng = np.random.default_rng(0)
        bright, sharp = [], []
        for path in args.quality:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit(f"cannot read {path}")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            for _ in range(40):
                frame = cv2.convertScaleAbs(rgb, alpha=1.0, beta=float(rng.uniform(-18, 18)))
                _, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
                decoded = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
                stats = frame_stats(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), len(jpg))
                bright.append(stats.brightness)
                sharp.append(stats.sharpness)
        names = ", ".join(Path(p).name for p in args.quality)
        ref = quality_reference(np.array(bright), np.array(sharp),
                                f"python -m model.drift --quality over {len(args.quality)} real hand photos "
                                f"({names}), 40 brightness-jittered JPEG frames each; derived numbers only")
        (here / QUALITY_FILE).write_text(json.dumps(ref, indent=1) + "\n")
        print(f"wrote {here / QUALITY_FILE}")
    if args.default_model:
        from model.datasets import read_datasets
        from model.splits import prepare, split, with_mirrored

        data = prepare(read_datasets(args.default_model))
        sp = split(data.y)
        X, y = with_mirrored(data, np.sort(np.concatenate([sp.train, sp.val])))
        print(f"wrote {write_reference(here / 'default', X, y)} from {len(y)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
