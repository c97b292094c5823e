"""Open-set recognition: a confidence that means something, and an answer for "none of the gestures".

The classifier's job ends at "which of the known gestures is most like this hand". Two numbers are
added on top of it, both fitted on data the classifier was not trained on:

* **Calibrated probabilities.** For an SVM, its one-vs-one decision values are turned into pairwise
  probabilities by one sigmoid (Platt scaling, shared by all pairs) and coupled into class
  probabilities (Wu, Lin & Weng 2004, the method libsvm's `probability=True` uses), then one
  temperature over their logarithms; both fitted on the validation split. Models of the first head
  format (no coupling) keep one temperature over the one-vs-rest vote scores, whose top probability
  is nearly the same for every hand (docs/decisions/, "confidence that means something"). For
  probabilistic models: a temperature over their log-probabilities. It never changes which class wins.
* **The answer's weakest duel.** An SVM's answer is as sure as the closest of its one-vs-one duels:
  the served confidence of a gesture is one more sigmoid over the smallest decision value of the
  answer against any other gesture, fitted on the leave-one-source-out folds (people the model never
  saw, as every player is). It ranks right over wrong answers better than the coupled probability
  (docs/decisions/0026-confidence-of-the-weakest-duel.md); it does not change the answer either.
* **An out-of-distribution (OOD) score.** The distance from the hand's feature vector (standardised,
  projected on the first principal components of the training rows) to the nearest training row.
  A hand far from every recorded gesture is answered `no_gesture`. The threshold is chosen on the
  validation split (known gestures) and on held-out real negatives (hands in other poses); see
  docs/recognition.md for the trade-off curve and why this score won over the alternatives.
* **Known non-gestures.** The real negatives themselves are kept too (same projection): a hand that is
  nearer to a recorded non-gesture than to every recorded gesture is `no_gesture` even when it is
  not far from the training data (an L shape lies close to `one`). The distance threshold covers
  poses nobody recorded; these rows cover the ones somebody did.

Everything is plain numbers saved in one `.npz` file beside the model (`openset.npz`, loaded with
`allow_pickle=False`), so it adds no type the model loader must trust.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

NO_GESTURE = "no_gesture"
OPENSET_FILE = "openset.npz"
DEFAULT_COMPONENTS = 16
# The distance threshold keeps at least this share of the validation split's true gestures (decision 22).
DEFAULT_MIN_ACCEPT = 0.995
# 2: optional pairwise coupling (`coupling_a`, `coupling_b`), no_gesture cut, weakest-duel sigmoid
# (`duel_a`, `duel_b`); 1 is still read.
_FORMAT = 2


def softmax(logits: np.ndarray, beta: float) -> np.ndarray:
    """Row-wise softmax of `beta * logits` ((K,) or (N, K))."""
    z = beta * np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


def pairwise_index(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j), i < j, class pairs in scikit-learn's one-vs-one order."""
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    return (np.array([i for i, _ in pairs], dtype=np.intp), np.array([j for _, j in pairs], dtype=np.intp))


def pairwise_coupling(ovo: np.ndarray, n_classes: int, a: float, b: float) -> np.ndarray:
    """One-vs-one decision values ((P,) or (N, P), > 0: the pair's first class) -> class probabilities
    ((K,) or (N, K)). Pairwise probabilities r_ij = sigmoid(a * dec_ij + b) are coupled by Wu, Lin &
    Weng's second method (2004; libsvm's): minimise sum_i sum_j (r_ji p_i - r_ij p_j)^2 with
    sum p = 1, one small linear system per hand."""
    dec = np.asarray(ovo, dtype=np.float64)
    if dec.ndim == 1:
        return _Coupler.get(n_classes).many(dec[None], a, b)[0]
    return _Coupler.get(n_classes).many(dec, a, b) if len(dec) else np.zeros((0, n_classes))


class _Coupler:
    """Index arrays for one class count, built once (the per-frame path is a 19 x 19 solve)."""

    _cache: ClassVar[dict[int, _Coupler]] = {}

    def __init__(self, k: int) -> None:
        self.k = k
        self.pi, self.pj = pairwise_index(k)
        self.diag = np.arange(k) * (k + 1) + np.arange(k)
        # (P, K) one-hot: pair p's first / second class (sums over the pairs a class belongs to).
        self.is_first = np.eye(k)[self.pi]
        self.is_second = np.eye(k)[self.pj]
        self.flat_ij = self.pi * (k + 1) + self.pj
        self.flat_ji = self.pj * (k + 1) + self.pi
        self.template = np.zeros((k + 1, k + 1))
        self.template[:k, k] = 1.0
        self.template[k, :k] = 1.0
        self.rhs = np.zeros(k + 1)
        self.rhs[k] = 1.0

    @classmethod
    def get(cls, k: int) -> _Coupler:
        found = cls._cache.get(k)
        if found is None:
            found = cls._cache[k] = cls(k)
        return found

    def many(self, dec: np.ndarray, a: float, b: float) -> np.ndarray:
        """(N, P) decision values -> (N, K) probabilities: N small systems solved as one stack."""
        k = self.k
        r = 1.0 / (1.0 + np.exp(-(a * dec + b)))
        r = np.minimum(np.maximum(r, 1e-7), 1.0 - 1e-7)  # P(first | first or second)
        s = 1.0 - r
        q = np.repeat(self.template[None], len(dec), axis=0)
        flat = q.reshape(len(dec), -1)
        flat[:, self.diag] = (s * s) @ self.is_first + (r * r) @ self.is_second
        off = -(s * r)
        flat[:, self.flat_ij] = off
        flat[:, self.flat_ji] = off
        p = np.linalg.solve(q, np.broadcast_to(self.rhs, (len(dec), k + 1))[..., None])[:, :k, 0]
        p = np.maximum(p, 1e-12)
        return p / p.sum(axis=1, keepdims=True)


def fit_pairwise_sigmoid(ovo: np.ndarray, y_index: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Platt's sigmoid (a, b), one for every pair, fitted by logistic regression on held-out rows:
    each row counts for the pairs that hold its true class."""

    pi, pj = pairwise_index(n_classes)
    ovo = np.asarray(ovo, dtype=np.float64)
    xs, ts = [], []
    for p, (i, j) in enumerate(zip(pi, pj, strict=True)):
        inside = (y_index == i) | (y_index == j)
        xs.append(ovo[inside, p])
        ts.append(y_index[inside] == i)
    return _platt(np.concatenate(xs), np.concatenate(ts))


def _platt(x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Platt's sigmoid (a, b): P(target) = sigmoid(a * x + b), by logistic regression on one score."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)[:, None]
    lr = LogisticRegression(C=1e4).fit(x, np.asarray(target, dtype=bool))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def weakest_duels(ovo: np.ndarray, n_classes: int, exclude: int | None = None) -> np.ndarray:
    """(N, P) one-vs-one decision values -> (N, K): for each class, its smallest decision value against
    any other class (oriented: > 0 means it wins that duel), leaving out the rival `exclude` (the
    trained `no_gesture` class: losing to "none" is what the `no_gesture` rule is for)."""
    dec = np.atleast_2d(np.asarray(ovo, dtype=np.float64))
    pairs = _Coupler.get(n_classes)  # its index arrays, built once per class count (per-frame path)
    pi, pj = pairs.pi, pairs.pj
    duel = np.full((len(dec), n_classes, n_classes), np.inf)
    duel[:, pi, pj] = dec
    duel[:, pj, pi] = -dec
    if exclude is not None:
        duel[:, :, exclude] = np.inf
    return duel.min(axis=2)


def duel_confidence(weakest: np.ndarray, duel: tuple[float, float]) -> np.ndarray:
    """The weakest duel's decision value -> P(the answer is right), by the head's sigmoid (a, b)."""
    a, b = duel
    return 1.0 / (1.0 + np.exp(-(a * np.asarray(weakest, dtype=np.float64) + b)))


def fit_duel_sigmoid(weakest: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """Platt's sigmoid (a, b) from answers' weakest duels to whether they were right (held-out rows)."""
    return _platt(np.clip(np.asarray(weakest, dtype=np.float64), -50.0, 50.0), correct)


def is_no_gesture(proba: np.ndarray, no_gesture: int, minimum: float | None) -> np.ndarray:
    """(N, K) or (K,) probabilities of a model with a trained `no_gesture` class (column
    `no_gesture`) -> whether the answer is `no_gesture`: its probability is at least `minimum`, or
    (None) it is the most likely class."""
    p = np.asarray(proba)
    if minimum is None:
        return np.argmax(p, axis=-1) == no_gesture
    return p[..., no_gesture] >= minimum


def fit_temperature(logits: np.ndarray, y_index: np.ndarray) -> float:
    """The inverse temperature `beta` minimising the NLL of `softmax(beta * logits)` on held-out rows."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(y_index))

    def nll(log_beta: float) -> float:
        p = softmax(logits, float(np.exp(log_beta)))[rows, y_index]
        return float(-np.mean(np.log(np.maximum(p, 1e-12))))

    best = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded")
    return float(np.exp(best.x))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE: the bin-weighted gap between mean confidence and accuracy (equal-width bins over (0, 1])."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: rows, mean confidence, accuracy (what the reliability diagram draws)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            out.append({"lo": float(lo), "hi": float(hi), "rows": int(inside.sum()),
                        "confidence": float(confidence[inside].mean()),
                        "accuracy": float(np.mean(correct[inside]))})
    return out


@dataclass(frozen=True)
class TradeOff:
    """One threshold's effect: share of true gestures accepted, share of non-gestures rejected."""

    threshold: float
    accepted: float
    rejected: float


def trade_off_curve(known: np.ndarray, negatives: np.ndarray, points: int = 60) -> list[TradeOff]:
    """Thresholds at quantiles of the known gestures' scores (0.80 .. 1.0 accepted)."""
    qs = np.linspace(0.80, 1.0, points)
    thresholds = np.unique(np.quantile(known, qs))
    return [TradeOff(float(t), float(np.mean(known <= t)), float(np.mean(negatives > t))) for t in thresholds]


def choose_threshold(known: np.ndarray, negatives: np.ndarray | None,
                     min_accept: float = DEFAULT_MIN_ACCEPT) -> TradeOff:
    """The threshold with the best balanced accuracy (accepted + rejected) / 2 among those that keep at
    least `min_accept` of the true gestures; without negatives, the `min_accept` quantile."""
    if negatives is None or len(negatives) == 0:
        t = float(np.quantile(known, min_accept))
        return TradeOff(t, float(np.mean(known <= t)), float("nan"))
    feasible = [p for p in trade_off_curve(known, negatives, points=400) if p.accepted >= min_accept]
    return max(feasible, key=lambda p: (p.accepted + p.rejected, -p.threshold))


@dataclass
class OpenSetHead:
    """Temperature + nearest-neighbour OOD score, over the model's standardised features."""

    beta: float  # inverse temperature on the class scores
    pca_mean: np.ndarray  # (D,)
    pca_components: np.ndarray  # (C, D)
    reference: np.ndarray  # (N, C) training rows in PCA space
    threshold: float  # OOD score above this -> no_gesture
    known_quantiles: np.ndarray  # (101,) the validation true gestures' OOD scores at 0..100 %
    negatives: np.ndarray | None = None  # (M, C) recorded non-gesture hands in PCA space
    # Platt sigmoid (a, b) of an SVM's pairwise decisions, coupled into probabilities; None: the
    # temperature is over the one-vs-rest vote scores (format 1).
    coupling: tuple[float, float] | None = None
    # A model with a trained no_gesture class answers it when its probability is at least this
    # (chosen on leave-one-source-out folds); None: when it is the most likely class.
    no_gesture_min: float | None = None
    # Sigmoid (a, b) from a gesture answer's weakest duel to its served confidence (SVMs with a
    # coupling); None: the answer's coupled probability is its confidence.
    duel: tuple[float, float] | None = None

    @classmethod
    def fit_reference(cls, scaled_train: np.ndarray, components: int = DEFAULT_COMPONENTS) -> OpenSetHead:
        """PCA basis + reference rows from standardised training features (beta/threshold set later)."""
        x = np.asarray(scaled_train, dtype=np.float64)
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        comps = vt[:components]
        # float16 halves the file; distances change by < 0.1 % (the threshold is fitted on the same).
        ref = ((x - mean) @ comps.T).astype(np.float16).astype(np.float32)
        return cls(1.0, mean.astype(np.float32), comps.astype(np.float32), ref, float("inf"),
                   np.zeros(101, dtype=np.float32))

    def with_reference(self, scaled_train: np.ndarray) -> OpenSetHead:
        """Same basis, threshold and temperature; reference rows replaced (the final refit's rows)."""
        ref = ((np.asarray(scaled_train, np.float64) - self.pca_mean) @ self.pca_components.T)
        return replace(self, reference=ref.astype(np.float16).astype(np.float32))

    def with_negatives(self, scaled_negatives: np.ndarray | None) -> OpenSetHead:
        """Same head; the known non-gesture rows replaced (standardised features; None: none)."""
        neg = None if scaled_negatives is None or len(scaled_negatives) == 0 else \
            self._project(scaled_negatives).astype(np.float16).astype(np.float32)
        return replace(self, negatives=neg)

    def _project(self, scaled: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(np.asarray(scaled, dtype=np.float32)) - self.pca_mean) @ self.pca_components.T

    @cached_property
    def _reference_sq(self) -> np.ndarray:  # squared norms, once per head (not per frame)
        return np.einsum("ij,ij->i", self.reference, self.reference)

    @cached_property
    def _negatives_sq(self) -> np.ndarray | None:
        return None if self.negatives is None else np.einsum("ij,ij->i", self.negatives, self.negatives)

    def _distances(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) standardised -> nearest gesture row, nearest known non-gesture (inf: none); one
        projection for both."""
        z = self._project(scaled)
        d_known = _nearest(z, self.reference, self._reference_sq)
        negatives_sq = self._negatives_sq
        if self.negatives is None or negatives_sq is None:
            return d_known, np.full(len(z), np.inf)
        return d_known, _nearest(z, self.negatives, negatives_sq)

    def ood_scores(self, scaled: np.ndarray) -> np.ndarray:
        """(N, D) standardised features -> (N,) distance to the nearest reference row."""
        return _nearest(self._project(scaled), self.reference, self._reference_sq)

    def rejects(self, scaled: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) bool: `no_gesture` (far from every gesture, or nearer a known non-gesture)."""
        d_known, d_negative = self._distances(scaled)
        return (d_known > self.threshold) | (d_negative < d_known)

    def verdict(self, scaled: np.ndarray) -> tuple[bool, float, float]:
        """One hand: (is it `no_gesture`, its OOD score, how sure the `no_gesture` is)."""
        return self.verdicts(scaled[None])[0]

    def verdicts(self, scaled: np.ndarray) -> list[tuple[bool, float, float]]:
        """(N, D) standardised hands -> `verdict` of each, with one pass over the reference rows."""
        known, negative = self._distances(scaled)
        out = []
        for d_known, d_negative in zip(known.tolist(), negative.tolist(), strict=True):
            far, like_a_negative = d_known > self.threshold, d_negative < d_known
            # Nearer a recorded non-gesture: 0.5 when halfway, 1.0 on top of it.
            resemblance = d_known / (d_known + d_negative) if like_a_negative else 0.0
            sureness = max(self.novelty(d_known) if far else 0.0, resemblance)
            out.append((far or like_a_negative, d_known, sureness))
        return out

    def ood_score(self, scaled: np.ndarray) -> float:
        return float(self.ood_scores(scaled[None])[0])

    def novelty(self, score: float) -> float:
        """Share of the validation's true gestures that were closer to the training data (0..1)."""
        return float(np.searchsorted(self.known_quantiles, score, side="right") - 1) / 100.0

    def set_threshold(self, known_scores: np.ndarray, threshold: float) -> None:
        self.threshold = float(threshold)
        self.known_quantiles = np.quantile(known_scores, np.linspace(0, 1, 101)).astype(np.float32)

    # ----------------------------------------------------------------------------------- persistence
    def save(self, path: Path) -> Path:
        extra: dict[str, np.ndarray] = {}
        if self.negatives is not None:
            extra["negatives"] = self.negatives.astype(np.float16)
        if self.coupling is not None:
            extra["coupling_a"] = np.float64(self.coupling[0])
            extra["coupling_b"] = np.float64(self.coupling[1])
        if self.no_gesture_min is not None:
            extra["no_gesture_min"] = np.float64(self.no_gesture_min)
        if self.duel is not None:
            extra["duel_a"], extra["duel_b"] = np.float64(self.duel[0]), np.float64(self.duel[1])
        np.savez_compressed(
            path, format=np.int64(_FORMAT if self.coupling is not None else 1), beta=np.float64(self.beta),
            pca_mean=self.pca_mean, pca_components=self.pca_components,
            reference=self.reference.astype(np.float16), threshold=np.float64(self.threshold),
            known_quantiles=self.known_quantiles, **extra,
        )
        return path

    @classmethod
    def load(cls, path: Path) -> OpenSetHead:
        with np.load(path, allow_pickle=False) as f:
            if int(f["format"]) not in (1, _FORMAT):
                raise ValueError(f"{path}: unknown open-set format {int(f['format'])}")
            negatives = f["negatives"].astype(np.float32) if "negatives" in f.files else None
            coupling = (float(f["coupling_a"]), float(f["coupling_b"])) if "coupling_a" in f.files else None
            no_gesture_min = float(f["no_gesture_min"]) if "no_gesture_min" in f.files else None
            duel = (float(f["duel_a"]), float(f["duel_b"])) if "duel_a" in f.files else None
            return cls(float(f["beta"]), f["pca_mean"].astype(np.float32),
                       f["pca_components"].astype(np.float32), f["reference"].astype(np.float32),
                       float(f["threshold"]), f["known_quantiles"].astype(np.float32), negatives, coupling,
                       no_gesture_min, duel)

    def summary(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold,
                "coupling": None if self.coupling is None else list(self.coupling),
                "no_gesture_min": self.no_gesture_min,
                "duel": None if self.duel is None else list(self.duel),
                "components": int(self.pca_components.shape[0]),
                "reference_rows": int(self.reference.shape[0]),
                "known_negative_rows": 0 if self.negatives is None else int(self.negatives.shape[0])}


def _nearest(z: np.ndarray, rows: np.ndarray, rows_sq: np.ndarray) -> np.ndarray:
    """(N, C) points -> (N,) Euclidean distance to the nearest of `rows` (M, C, squared norms
    `rows_sq`), in bounded blocks."""
    out = np.empty(len(z), dtype=np.float64)
    for start in range(0, len(z), 256):  # bounded memory for batch evaluation
        block = z[start:start + 256]
        d2 = block @ rows.T  # in place from here: one (block, M) array instead of four
        d2 *= -2.0
        d2 += rows_sq
        # |z|^2 is the same for every row: added to the smallest only (rounding is monotone: same result)
        nearest_sq = d2.min(axis=1) + np.einsum("ij,ij->i", block, block)
        out[start:start + 256] = np.sqrt(np.maximum(nearest_sq, 0.0))
    return out
