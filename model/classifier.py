"""Serving side of the gesture model: load it from a trusted place, classify one feature vector fast.

Where models come from (the trust model, see docs/training.md):
* `None`: the default model committed in `model/default/` (`model.skops` + `metadata.json`);
* a local directory holding `model.skops` + `metadata.json` (what `gesture-maze train --out-default` writes);
* `models:/<name>/<version>` or `models:/<name>@<alias>` from the MLflow Model Registry the operator
  configured (the tracking URI). Only registries you control should be configured.

Every model is a skops file, never a pickle, and is loaded with `TRUSTED_TYPES`: an explicit list of
the scikit-learn/numpy types this project's training produces. A file naming any other type is refused
(a pickle, or a skops file whose own trusted list we would follow, could run code when loaded).
A model whose feature version differs from `model.features.FEATURE_VERSION` is refused as well.
A model directory may keep an SVM's support vectors as the hands they came from
(`support_hands.npy`, numpy without pickle; `model.support_hands`): they are recomputed when loaded.
Beside the model may sit its open-set head (`openset.npz`, `model.openset`) and a smaller kernel
expansion of an RBF SVM that serves its decisions (`expansion.npz`, `model.expansion`).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from model import support_hands
from model.expansion import DEFAULT_SIZE as DEFAULT_EXPANSION_SIZE
from model.expansion import EXPANSION_FILE, ExpansionError, KernelExpansion, fit_expansion
from model.features import FEATURE_VERSION, N_FEATURES
from model.openset import (
    NO_GESTURE,
    OPENSET_FILE,
    OpenSetHead,
    duel_confidence,
    is_no_gesture,
    pairwise_coupling,
    softmax,
    weakest_duels,
)
from model.personal import PlayerAdapter

log = logging.getLogger(__name__)

REGISTERED_MODEL_NAME = "gesture-classifier"
CHAMPION_ALIAS = "champion"
MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
# Types a model file may contain beyond skops' own safe defaults (numpy/builtins/most of sklearn).
# Kept explicit: skops refuses to load anything else.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.decomposition._pca.PCA",
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.ensemble._voting.VotingClassifier",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.utils._bunch.Bunch",
    "numpy.dtype",
    "numpy.random.mtrand.RandomState",
    "numpy.random._mt19937.MT19937",
    "builtins.slice",
)
_Stored = TypeVar("_Stored")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


class ModelLoadError(RuntimeError):
    """The model could not be loaded (missing, untrusted, or built for other features)."""


@dataclass(frozen=True)
class Prediction:
    """`gesture` is a known class or `no_gesture`. `confidence` is the calibrated probability that the
    answer is right: for an SVM with a coupling head, the answer's coupled pairwise probability
    (docs/decisions/0022-confidence-that-means-something.md), or with a weakest-duel sigmoid in the
    head, that sigmoid over the answer's closest one-vs-one duel (decision 0026). For `no_gesture`:
    the trained class's probability, or the share of true gestures (validation) closer to the
    training data than this hand, or for a hand nearer a recorded non-gesture than to every gesture,
    how near (0.5 halfway, 1.0 on top of it), whichever is larger. `closest` is the most likely
    known gesture either way; `ood_score` the distance to the training data (0.0 without a head)."""

    gesture: str
    confidence: float
    closest: str | None = None
    ood_score: float = 0.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str  # registry version, or the default model's training timestamp
    alias: str | None
    source: str  # the URI or path it was loaded from
    feature_version: str


_ROWWISE_MAX = 4  # batches up to this many hands take one matrix-vector product per hand (_FastSVC)


class _FastSVC:
    """`Pipeline(StandardScaler, SVC)` (or the older `CalibratedClassifierCV(SVC, "temperature")` form)
    compiled to a few numpy operations for one sample: the standardised vector and the SVC's
    one-vs-rest scores (`decision_function` with `decision_function_shape="ovr"`).

    scikit-learn's single-sample path costs ~2-3 ms, almost all in per-call validation and a Python
    loop over the 153 class pairs; the arithmetic itself is ~0.1 ms. `GestureClassifier` checks this
    against scikit-learn when it is built and falls back when they disagree.
    """

    def __init__(self, estimator: Any) -> None:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.decomposition import PCA
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        if not (isinstance(estimator, Pipeline) and len(estimator.steps) in (2, 3)):
            raise TypeError("not a scaler (+ PCA) + SVC pipeline")
        scaler, last = estimator.steps[0][1], estimator.steps[-1][1]
        if not isinstance(scaler, StandardScaler):
            raise TypeError("not a scaler (+ PCA) + SVC pipeline")
        # A PCA step is a linear map of the standardised vector, applied before the kernel: `scaled`
        # stays the standardised space the open-set head measures in.
        self.projection: tuple[np.ndarray, np.ndarray] | None = None
        if len(estimator.steps) == 3:
            pca = estimator.steps[1][1]
            if not isinstance(pca, PCA) or pca.whiten:
                raise TypeError("the middle step is not an unwhitened PCA")
            self.projection = (np.asarray(pca.mean_, dtype=np.float64),
                               np.ascontiguousarray(pca.components_.T, dtype=np.float64))
        self.legacy_beta: float | None = None
        if isinstance(last, CalibratedClassifierCV):
            if last.method != "temperature" or len(last.calibrated_classifiers_) != 1:
                raise TypeError("needs a single temperature-scaled classifier (ensemble=False)")
            inner = last.calibrated_classifiers_[0]
            svc = inner.estimator
            self.legacy_beta = float(inner.calibrators[0].beta_)
        else:
            svc = last
        if not isinstance(svc, SVC) or svc.kernel not in ("poly", "rbf", "linear"):
            raise TypeError("not an SVC with a poly, rbf or linear kernel")
        n_classes = len(svc.classes_)
        if n_classes < 3 or svc.decision_function_shape != "ovr" or svc.break_ties:
            raise TypeError("unsupported SVC configuration")
        self.mean = np.asarray(scaler.mean_ if scaler.with_mean else 0.0, dtype=np.float64)
        self.scale = np.asarray(scaler.scale_ if scaler.with_std else 1.0, dtype=np.float64)
        self.kernel = svc.kernel
        self.gamma = float(svc._gamma)
        self.coef0 = float(svc.coef0)
        self.degree = int(svc.degree)
        self.sv = np.ascontiguousarray(svc.support_vectors_, dtype=np.float64)
        self.sv_sq = np.einsum("ij,ij->i", self.sv, self.sv)
        self.sv32 = np.ascontiguousarray(svc.support_vectors_, dtype=np.float32)
        dual = np.asarray(svc.dual_coef_, dtype=np.float64)  # (n_classes-1, n_sv)
        ends = np.cumsum(np.asarray(svc.n_support_)).astype(np.intp)
        self.segments = list(zip(np.concatenate([[0], ends[:-1]]).tolist(), ends.tolist(), strict=True))
        # Per class: its support vectors' dual coefficients, (n_classes-1, n_sv_of_class). A product per
        # class replaces `dual * k` (a 1.5 MB temporary per hand) and serves a batch of hands at once.
        self.dual_by_class = [np.ascontiguousarray(dual[:, a:b]) for a, b in self.segments]
        pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
        self.pi = np.array([i for i, _ in pairs], dtype=np.intp)
        self.pj = np.array([j for _, j in pairs], dtype=np.intp)
        self.intercept = np.asarray(svc.intercept_, dtype=np.float64)
        self.expansion: KernelExpansion | None = None
        # Each support vector's class, in the SVC's order (what an expansion is fitted from).
        self.sv_class = np.concatenate([np.full(b - a, c) for c, (a, b) in enumerate(self.segments)])
        # (n_classes, n_pairs): +1 where the class is the pair's first member, -1 where second.
        self.first = np.zeros((n_classes, len(pairs)))
        self.second = np.zeros((n_classes, len(pairs)))
        self.first[self.pi, np.arange(len(pairs))] = 1.0
        self.second[self.pj, np.arange(len(pairs))] = 1.0
        # Scores are returned in the estimator's classes_ order; map the SVC's onto it (a calibrated
        # SVC is fitted on encoded labels 0..n-1).
        outer = np.asarray(estimator.classes_)
        if np.issubdtype(np.asarray(svc.classes_).dtype, np.integer):
            self.to_outer = np.asarray(svc.classes_, dtype=np.intp)
        else:
            order = {c: k for k, c in enumerate(outer)}
            self.to_outer = np.array([order[c] for c in svc.classes_], dtype=np.intp)

    def scaled(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def use_expansion(self, expansion: KernelExpansion) -> None:
        """Serve `ovo` from a smaller kernel expansion of this (RBF) SVM (`model.expansion`)."""
        if self.kernel != "rbf" or self.projection is not None:
            raise ExpansionError("an expansion serves a plain RBF SVM only")
        expansion.check(len(self.sv), len(self.pi))
        self.basis32 = np.ascontiguousarray(self.sv32[expansion.basis])
        self.basis_sq = self.sv_sq[expansion.basis]
        # Summed in float64: 4,000 terms of weights up to ~200 lose ~1e-4 in float32, enough for a batch
        # and a single hand (other summation orders) to differ in the served confidence.
        self.weights = np.asarray(expansion.weights, dtype=np.float64)
        self.expansion = expansion  # last: `ovo` reads it first

    def _rbf(self, Z: np.ndarray, vectors32: np.ndarray, vectors_sq: np.ndarray) -> np.ndarray:
        """(N, d) hands -> (n_vectors, N) RBF kernel values. The one big product runs in float32: ~10k
        support vectors x 307 features is memory-bound, and half the bytes made it 4.6x faster (1.08 ->
        0.23 ms); the distances it feeds are differences of norms ~300 apart by ~100s, so float32's 1e-7
        keeps probabilities within 1e-5."""
        Z32 = Z.astype(np.float32)
        if 1 < len(Z32) <= _ROWWISE_MAX:
            # OpenBLAS's matrix product packs all the vectors for a thin batch: for 2-4 hands one
            # matrix-vector product each is ~1.5-2.4x faster (2 hands: 0.78 vs 1.86 ms).
            dot = np.stack([vectors32 @ row for row in Z32], axis=1).astype(np.float64)
        else:
            dot = (vectors32 @ Z32.T).astype(np.float64)
        return np.exp(-self.gamma * (vectors_sq[:, None] - 2.0 * dot + np.einsum("ij,ij->i", Z, Z)))

    def ovo(self, z: np.ndarray) -> np.ndarray:
        """Standardised (n_features,) or (N, n_features) -> (n_pairs,) or (N, n_pairs) one-vs-one
        decision values in the SVC's own pair order (> 0: the pair's first class), as
        `SVC._decision_function`, or from the kernel expansion when one is in use."""
        Z = np.atleast_2d(z)
        if self.expansion is None:
            out = self.exact_ovo(Z)
        else:
            out = self._rbf(Z, self.basis32, self.basis_sq).T @ self.weights + self.expansion.bias
        return out if np.ndim(z) == 2 else out[0]

    def exact_ovo(self, Z: np.ndarray) -> np.ndarray:
        """(N, n_features) standardised -> (N, n_pairs) the SVC's own decisions, over every support
        vector. A batch reads the support vectors once for all its hands: they are ~12 MB, and a single
        hand's product is bound by reading them (cold: ~1.5 ms, most of a frame's classification)."""
        if self.projection is not None:
            Z = (Z - self.projection[0]) @ self.projection[1]
        # Kernel values as (n_sv, N): each class's support vectors are then a contiguous block of rows.
        if self.kernel == "poly":
            k = (self.gamma * (self.sv @ Z.T) + self.coef0) ** self.degree
        elif self.kernel == "rbf":
            k = self._rbf(Z, self.sv32, self.sv_sq)
        else:
            k = self.sv @ Z.T
        # s[n, r, c]: dual-coefficient row r applied to hand n's kernel values over class c's vectors.
        s = np.stack([d @ k[a:b] for (a, b), d in zip(self.segments, self.dual_by_class, strict=True)],
                     axis=2).transpose(1, 0, 2)
        return s[:, self.pj - 1, self.pi] + s[:, self.pi, self.pj] + self.intercept

    def scores(self, z: np.ndarray) -> np.ndarray:
        """Standardised (n_features,) or (N, n_features) -> (n_classes,) or (N, n_classes) one-vs-rest
        scores, estimator classes_ order."""
        dec = self.ovo(z)
        votes = (dec >= 0) @ self.first.T + (dec < 0) @ self.second.T
        conf = dec @ self.first.T - dec @ self.second.T
        ovr = votes + conf / (3.0 * (np.abs(conf) + 1.0))
        out = np.empty_like(ovr)
        out[..., self.to_outer] = ovr
        return out

    def predict_proba(self, x: np.ndarray, beta: float | None = None,
                      coupling: tuple[float, float] | None = None) -> np.ndarray:
        """(n_features,) -> (n_classes,) probabilities: softmax(beta * scores), or with `coupling` the
        coupled pairwise probabilities, tempered by beta."""
        return self.proba_scaled(self.scaled(x), beta, coupling)

    def proba_scaled(self, z: np.ndarray, beta: float | None = None,
                     coupling: tuple[float, float] | None = None) -> np.ndarray:
        """Standardised (n_features,) or (N, n_features) -> probabilities, as `predict_proba`."""
        if coupling is not None:
            return self.coupled(self.ovo(z), beta, coupling)
        b = self.legacy_beta if beta is None else beta
        return softmax(self.scores(z), 1.0 if b is None else b)

    def coupled(self, dec: np.ndarray, beta: float | None, coupling: tuple[float, float]) -> np.ndarray:
        """`ovo` decision values -> the coupled probabilities, tempered by beta (classes_ order)."""
        b = self.legacy_beta if beta is None else beta
        p = pairwise_coupling(dec, len(self.to_outer), *coupling)
        out = np.empty_like(p)
        out[..., self.to_outer] = p
        return softmax(np.log(out), 1.0 if b is None else b)


class _FastMLP:
    """`Pipeline(StandardScaler, MLPClassifier)`, or a soft `VotingClassifier` of MLPs after the scaler
    (the `mlp_ensemble` family), compiled to its matrix products: the standardised rows and their
    (averaged) softmax probabilities, for a batch of hands at once without scikit-learn's per-call
    checks."""

    def __init__(self, estimator: Any) -> None:
        from sklearn.ensemble import VotingClassifier
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        if not (isinstance(estimator, Pipeline) and len(estimator.steps) == 2
                and isinstance(estimator.steps[0][1], StandardScaler)):
            raise TypeError("not a scaler + MLP pipeline")
        scaler, last = estimator.steps[0][1], estimator.steps[1][1]
        if isinstance(last, VotingClassifier) and last.voting == "soft" and last.weights is None:
            members = list(last.estimators_)
        else:
            members = [last]
        if not all(isinstance(m, MLPClassifier) and m.activation == "relu" and m.out_activation_ == "softmax"
                   for m in members):
            raise TypeError("not ReLU MLPs with a softmax output")
        self.mean = np.asarray(scaler.mean_ if scaler.with_mean else 0.0, dtype=np.float64)
        self.scale = np.asarray(scaler.scale_ if scaler.with_std else 1.0, dtype=np.float64)
        self.layers = [[(np.asarray(w, np.float64), np.asarray(b, np.float64))
                        for w, b in zip(m.coefs_, m.intercepts_, strict=True)] for m in members]

    def scaled(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def proba_scaled(self, z: np.ndarray, beta: float | None = None,
                     coupling: tuple[float, float] | None = None) -> np.ndarray:
        """Standardised (N, n_features) -> (N, n_classes): the members' mean probability, then (with a
        head) tempered by `beta` as `GestureClassifier.predict_proba` does."""
        Z = np.atleast_2d(z)
        total = np.zeros((len(Z), self.layers[0][-1][0].shape[1]))
        for layers in self.layers:
            h = Z
            for w, b in layers[:-1]:
                h = np.maximum(h @ w + b, 0.0)
            total += softmax(h @ layers[-1][0] + layers[-1][1], 1.0)
        proba = total / len(self.layers)
        return proba if beta is None else softmax(np.log(np.maximum(proba, 1e-12)), beta)


def _is_plain_svm(estimator: Any) -> bool:
    """A `scaler -> SVC/LinearSVC` pipeline: class scores from `decision_function`, no probabilities."""
    last = getattr(estimator, "steps", [(None, estimator)])[-1][1]
    return type(last).__name__ in ("SVC", "LinearSVC")


class GestureClassifier:
    """A fitted scikit-learn classifier over `model.features` vectors, with its provenance and (for
    models trained with it) the open-set head: calibrated probabilities and the `no_gesture` answer."""

    def __init__(self, estimator: Any, info: ModelInfo, openset: OpenSetHead | None = None,
                 expansion: KernelExpansion | None = None) -> None:
        self.estimator = estimator
        self.info = info
        self.openset = openset
        self._classes = tuple(str(c) for c in estimator.classes_)
        self._fast = self._compile(estimator)
        self.expansion: KernelExpansion | None = None
        if expansion is not None:
            self.use_expansion(expansion)

    def use_expansion(self, expansion: KernelExpansion | None) -> None:
        """Serve the SVM's decisions from `expansion` (None: from every support vector again)."""
        if expansion is None:
            if isinstance(self._fast, _FastSVC):
                self._fast.expansion = None
            self.expansion = None
            return
        if not isinstance(self._fast, _FastSVC):
            raise ExpansionError("an expansion needs the compiled SVM path")
        self._fast.use_expansion(expansion)
        self.expansion = expansion

    def fit_expansion(self, size: int = DEFAULT_EXPANSION_SIZE) -> KernelExpansion | None:
        """A kernel expansion of this RBF SVM with `size` basis vectors (`model.expansion`), or None
        when there is nothing to gain (not a compiled RBF SVM, or no more support vectors than that)."""
        fast = self._fast
        if not isinstance(fast, _FastSVC) or fast.kernel != "rbf" or fast.projection is not None:
            return None
        if len(fast.sv) <= size:
            return None
        return fit_expansion(fast.exact_ovo, fast.sv, fast.sv_class, fast.gamma, size)

    def agreement(self, features: np.ndarray, expansion: KernelExpansion) -> float:
        """Share of the rows `features` answered the same (gesture or `no_gesture`) with `expansion`
        as with every support vector. Switches the expansion off and on: for training and tests, not
        for a classifier a server is using."""
        previous = self.expansion
        try:
            self.use_expansion(None)
            exact = [p.gesture for p in self.predict_many(features)]
            self.use_expansion(expansion)
            served = [p.gesture for p in self.predict_many(features)]
        finally:
            self.use_expansion(previous)
        return float(np.mean([a == b for a, b in zip(exact, served, strict=True)]))

    def _compile(self, estimator: Any) -> _FastSVC | _FastMLP | None:
        fast: _FastSVC | _FastMLP | None = None
        for compiled in (_FastSVC, _FastMLP):
            try:
                fast = compiled(estimator)
                break
            except (TypeError, AttributeError):
                continue
        if fast is None:
            return None
        # Probe with points around the training data; any disagreement means scikit-learn's internals
        # moved, so the slow but authoritative path is used instead (1e-4: the float32 kernel product
        # moves probabilities by ~1e-5; a moved internal moves them by far more).
        rng = np.random.default_rng(0)
        probes = fast.mean + fast.scale * rng.normal(size=(8, N_FEATURES))
        expected = self.predict_proba(probes)
        got = fast.proba_scaled(fast.scaled(probes), self._beta, self._coupling)
        if not np.allclose(expected, got, rtol=1e-4, atol=1e-7):
            log.warning("fast %s path disagrees with scikit-learn; using predict_proba", type(fast).__name__)
            return None
        return fast

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    @property
    def _beta(self) -> float | None:
        return self.openset.beta if self.openset is not None else None

    @property
    def _coupling(self) -> tuple[float, float] | None:
        """Platt (a, b) of the pairwise decisions when the head couples them (SVMs, head format 2)."""
        if self.openset is None or self.openset.coupling is None or not _is_plain_svm(self.estimator):
            return None
        return self.openset.coupling

    @property
    def _duel(self) -> tuple[float, float] | None:
        """The head's weakest-duel sigmoid, for an SVM whose probabilities are coupled."""
        return self.openset.duel if self.openset is not None and self._coupling is not None else None

    @cached_property
    def _svc_order(self) -> tuple[list[int], int | None]:
        """Where each of the SVC's classes sits in `classes`, and the SVC's no_gesture column."""
        svc_classes = [str(c) for c in self.estimator.steps[-1][1].classes_]
        return ([self._classes.index(c) for c in svc_classes],
                svc_classes.index(NO_GESTURE) if NO_GESTURE in svc_classes else None)

    def _duel_confidences(self, dec: np.ndarray, duel: tuple[float, float]) -> np.ndarray:
        """(N, n_pairs) one-vs-one decisions -> (N, n_classes) each class's confidence were it the
        answer: the head's sigmoid over its weakest duel against the other gestures."""
        order, exclude = self._svc_order
        sure = duel_confidence(weakest_duels(dec, len(order), exclude), duel)
        out = np.empty_like(sure)
        out[:, order] = sure
        return out

    @property
    def _no_gesture_min(self) -> float | None:
        return self.openset.no_gesture_min if self.openset is not None else None

    @property
    def gestures(self) -> tuple[str, ...]:
        """The classes that are gestures (`classes` without a trained `no_gesture` class)."""
        return tuple(c for c in self._classes if c != NO_GESTURE)

    def pairwise_decisions(self, features: np.ndarray) -> np.ndarray:
        """(N, n_features) -> (N, n_pairs) an SVM's one-vs-one decision values (> 0: first class)."""
        X = np.atleast_2d(np.asarray(features, dtype=np.float32))
        svc = self.estimator.steps[-1][1]
        Z = self.estimator[:-1].transform(X)
        return np.asarray(svc._decision_function(Z), dtype=np.float64)

    def class_scores(self, features: np.ndarray) -> np.ndarray:
        """(N, n_features) -> (N, n_classes) uncalibrated class scores (what the temperature scales):
        an SVM's one-vs-rest decision values, otherwise log-probabilities."""
        X = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if _is_plain_svm(self.estimator):
            return np.asarray(self.estimator.decision_function(X), dtype=np.float64)
        return np.log(np.maximum(self.estimator.predict_proba(X), 1e-12))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, n_features) -> (N, n_classes) probabilities (batch; evaluation and tests)."""
        X = np.atleast_2d(np.asarray(features, dtype=np.float32))
        coupling = self._coupling
        if coupling is not None:
            svc = self.estimator.steps[-1][1]
            p = pairwise_coupling(self.pairwise_decisions(X), len(svc.classes_), *coupling)
            order = np.searchsorted(np.asarray(self.estimator.classes_), svc.classes_)
            out = np.empty_like(p)
            out[:, order] = p
            return softmax(np.log(out), self._beta or 1.0)
        if self.openset is not None or _is_plain_svm(self.estimator):
            beta = self._beta
            return softmax(self.class_scores(X), 1.0 if beta is None else beta)
        return self.estimator.predict_proba(X)

    def scaled(self, features: np.ndarray) -> np.ndarray:
        """The standardised features the open-set head measures distances in."""
        X = np.atleast_2d(np.asarray(features, dtype=np.float32))
        return np.asarray(self.estimator.steps[0][1].transform(X), dtype=np.float64)

    def rejects(self, features: np.ndarray, proba: np.ndarray | None = None) -> np.ndarray:
        """(N, n_features) -> (N,) bool: would `predict` answer `no_gesture` (the trained `no_gesture`
        class is the most likely, or the head rejects the hand; False without either). `proba`:
        `predict_proba(features)` when the caller has it already."""
        out = np.zeros(len(np.atleast_2d(features)), dtype=bool)
        if NO_GESTURE in self._classes:
            p = self.predict_proba(features) if proba is None else proba
            out |= is_no_gesture(p, self._classes.index(NO_GESTURE), self._no_gesture_min)
        if self.openset is not None:
            out |= self.openset.rejects(self.scaled(features))
        return out

    def ood_scores(self, features: np.ndarray) -> np.ndarray:
        """(N, n_features) -> (N,) distance to the training data (0 when the model has no head)."""
        if self.openset is None:
            return np.zeros(len(np.atleast_2d(features)))
        return self.openset.ood_scores(self.scaled(features))

    def predict(self, features: np.ndarray, adapter: PlayerAdapter | None = None) -> Prediction:
        """One hand's feature vector (from `landmark_features`) -> the most likely gesture, or
        `no_gesture` when the hand is far from every gesture the model was trained on. With a
        player's `adapter` (per-player calibration), their own samples decide when they are close."""
        return self.predict_many(np.asarray(features, dtype=np.float32).reshape(1, -1), [adapter])[0]

    def predict_many(
        self, features: np.ndarray, adapters: Sequence[PlayerAdapter | None] | None = None
    ) -> list[Prediction]:
        """(N, n_features), e.g. many players' hands at once, -> what `predict` answers for each row
        (`adapters[n]`: row n's player's calibration, or None). One pass over the model for them all."""
        X = np.asarray(features, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != N_FEATURES:
            raise ValueError(f"expected {N_FEATURES} features, got {X.shape[-1] if X.ndim else 0}")
        personal = list(adapters) if adapters is not None else [None] * len(X)
        if len(personal) != len(X):
            raise ValueError("one adapter (or None) per row")
        duel, coupling = self._duel, self._coupling
        sure: np.ndarray | None = None
        if isinstance(self._fast, _FastSVC) and coupling is not None:
            Z: np.ndarray | None = self._fast.scaled(X)
            dec = self._fast.ovo(Z)
            proba = self._fast.coupled(dec, self._beta, coupling)
            sure = None if duel is None else self._duel_confidences(dec, duel)
        elif self._fast is not None:
            Z = self._fast.scaled(X)
            proba = self._fast.proba_scaled(Z, self._beta, coupling)
        else:
            Z = None
            proba = self.predict_proba(X)
            sure = None if duel is None else self._duel_confidences(self.pairwise_decisions(X), duel)
        if Z is None and (self.openset is not None or any(a is not None for a in personal)):
            Z = self.scaled(X)
        verdicts = self.openset.verdicts(Z) if self.openset is not None and Z is not None else None
        return [
            self._decide(proba[n], None if Z is None else Z[n], personal[n],
                         None if verdicts is None else verdicts[n], None if sure is None else sure[n])
            for n in range(len(X))
        ]

    def _decide(
        self, proba: np.ndarray, z: np.ndarray | None, adapter: PlayerAdapter | None,
        verdict: tuple[bool, float, float] | None, sure: np.ndarray | None = None,
    ) -> Prediction:
        """One hand's answer from its probabilities, its player's samples and the open-set verdict.
        `sure`: each class's weakest-duel confidence (heads that have one), served for a gesture."""
        served = proba if sure is None else sure
        best = int(np.argmax(proba))
        answer, confidence = self._classes[best], float(served[best])
        closest = answer
        if NO_GESTURE in self._classes:  # a trained no_gesture class; `closest` is the likeliest gesture
            ng = self._classes.index(NO_GESTURE)
            gesture = int(np.argmax(np.where(np.arange(len(proba)) == ng, -1.0, proba)))
            closest = self._classes[gesture]
            if is_no_gesture(proba, ng, self._no_gesture_min):
                answer, confidence = NO_GESTURE, float(proba[ng])
            else:
                answer, confidence = closest, float(served[gesture])
        if adapter is not None and z is not None and (vote := adapter.vote(z)) is not None:
            return Prediction(vote[0], vote[1], closest, 0.0)
        if verdict is None:
            return Prediction(answer, confidence, closest)
        rejected, score, sureness = verdict
        if answer == NO_GESTURE:
            return Prediction(NO_GESTURE, max(confidence, sureness if rejected else 0.0), closest, score)
        if rejected:
            return Prediction(NO_GESTURE, sureness, closest, score)
        return Prediction(answer, confidence, closest, score)


def load_skops(path: Path) -> Any:
    """Load a skops model file, trusting only `TRUSTED_TYPES` (plus skops' safe defaults)."""
    import skops.io

    try:
        return skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model file not found: {path}") from exc
    except Exception as exc:  # skops raises UntrustedTypesFoundException and format errors
        raise ModelLoadError(f"refusing to load {path}: {exc}") from exc


def _load_beside(directory: Path, name: str, read: Callable[[Path], _Stored]) -> _Stored | None:
    """A file stored with a model, read by `read`, or None when there is none: beside model.skops in a
    model directory, under extra_files/ in an MLflow-logged model."""
    candidates = (Path(directory) / name, Path(directory) / "extra_files" / name)
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        return None
    try:
        return read(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc


def load_openset(directory: Path) -> OpenSetHead | None:
    """The open-set head beside a model (`openset.npz`), or None for a model trained without one."""
    return _load_beside(directory, OPENSET_FILE, OpenSetHead.load)


def load_expansion(directory: Path) -> KernelExpansion | None:
    """The kernel expansion beside a model (`expansion.npz`), or None (served over every support vector)."""
    return _load_beside(directory, EXPANSION_FILE, KernelExpansion.load)


def _classifier(estimator: Any, info: ModelInfo, directory: Path) -> GestureClassifier:
    """The classifier of a loaded estimator with what is stored beside it (head, expansion)."""
    try:
        return GestureClassifier(estimator, info, load_openset(directory), load_expansion(directory))
    except ExpansionError as exc:
        raise ModelLoadError(f"the kernel expansion of {info.source} does not fit its model: {exc}") from exc


def _check_feature_version(found: str | None, source: str) -> str:
    if found != FEATURE_VERSION:
        raise ModelLoadError(
            f"{source} was trained on features {found!r}, this code computes {FEATURE_VERSION!r}"
        )
    return found


def load_directory(directory: Path, source: str | None = None) -> GestureClassifier:
    """A model directory: `model.skops` + `metadata.json` (+ `support_hands.npy`), the committed
    default's layout."""
    directory = Path(directory)
    source = source or str(directory)
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {directory / METADATA_FILE}: {exc}") from exc
    feature_version = _check_feature_version(metadata.get("feature_version"), source)
    estimator = load_skops(directory / MODEL_FILE)
    try:
        hands = support_hands.load(directory)
        if hands is not None:
            support_hands.restore_support_hands(estimator, hands)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot restore the support vectors of {source}: {exc}") from exc
    info = ModelInfo(
        name=str(metadata.get("name", "default")),
        version=str(metadata.get("version", metadata.get("trained_at", "unknown"))),
        alias=None,
        source=source,
        feature_version=feature_version,
    )
    return _classifier(estimator, info, directory)


def default_model_dir() -> Path:
    """`model/default/`, also when installed as a package (package-data)."""
    return Path(str(resources.files("model") / "default"))


def _registry_client(tracking_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/name/3` -> (name, "3", None); `models:/name@alias` -> (name, None, "alias")."""
    match = _MODELS_URI.match(uri)
    if not match:
        raise ModelLoadError(f"unsupported model URI {uri!r}: use models:/<name>/<version> or @<alias>")
    return match["name"], match["version"], match["alias"]


def _resolve_version(client: Any, name: str, version: str | None, alias: str | None) -> str:
    if alias is not None:
        return str(client.get_model_version_by_alias(name, alias).version)
    assert version is not None
    return version


def load_registered(
    name: str, version: str, *, alias: str | None = None, tracking_uri: str | None = None
) -> GestureClassifier:
    """One registry version: download its artifacts, load `model.skops` with our trusted types."""
    import yaml  # mlflow-skinny's dependency
    from mlflow.artifacts import download_artifacts

    client = _registry_client(tracking_uri)
    source = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    try:
        artifact_uri = client.get_model_version_download_uri(name, version)
        with tempfile.TemporaryDirectory(prefix="gesture-model-") as tmp:
            local = Path(
                download_artifacts(artifact_uri=artifact_uri, dst_path=tmp, tracking_uri=tracking_uri)
            )
            # The MLmodel file as YAML: mlflow.models.Model would parse the signature, which needs
            # pandas (full mlflow); serving has only mlflow-skinny.
            metadata = (yaml.safe_load((local / "MLmodel").read_text()) or {}).get("metadata") or {}
            feature_version = _check_feature_version(metadata.get("feature_version"), source)
            estimator = load_skops(local / MODEL_FILE)
            info = ModelInfo(name, str(version), alias, source, feature_version)
            return _classifier(estimator, info, local)
    except ModelLoadError:
        raise
    except Exception as exc:  # MLflow raises its own exception types for missing models/aliases
        raise ModelLoadError(f"cannot load {source}: {exc}") from exc


def load_classifier(uri: str | None, *, tracking_uri: str | None = None) -> GestureClassifier:
    """The classifier at `uri` (see module docstring); None means the committed default model."""
    if uri is None or uri == "":
        return load_directory(default_model_dir(), source="default")
    if uri.startswith("models:/"):
        name, version, alias = parse_models_uri(uri)
        client = _registry_client(tracking_uri)
        try:
            resolved = _resolve_version(client, name, version, alias)
        except Exception as exc:
            raise ModelLoadError(f"cannot resolve {uri}: {exc}") from exc
        return load_registered(name, resolved, alias=alias, tracking_uri=tracking_uri)
    path = Path(uri.removeprefix("file://"))
    if path.is_dir():
        return load_directory(path)
    raise ModelLoadError(f"unsupported model URI {uri!r}")


class ModelHandle:
    """The model being served, swappable without a restart.

    `current` is a plain attribute read, so a frame that already took the classifier finishes on it
    while `refresh()` (blocking: registry round trip + download; call it from a thread) installs a new
    champion. Only alias URIs (`models:/name@alias`) can change; other URIs never refresh.
    """

    def __init__(self, uri: str | None = None, *, tracking_uri: str | None = None) -> None:
        self.uri = uri or None
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()  # one refresh at a time
        self._alias: tuple[str, str] | None = None
        if self.uri is not None and self.uri.startswith("models:/"):
            name, _, alias = parse_models_uri(self.uri)
            if alias is not None:
                self._alias = (name, alias)
        self._current = load_classifier(self.uri, tracking_uri=tracking_uri)

    @property
    def current(self) -> GestureClassifier:
        return self._current

    @property
    def info(self) -> ModelInfo:
        return self._current.info

    def refresh(self) -> bool:
        """Re-resolve the alias; load and swap in the new version if it moved. True when swapped."""
        if self._alias is None:
            return False
        name, alias = self._alias
        with self._lock:
            client = _registry_client(self.tracking_uri)
            try:
                version = str(client.get_model_version_by_alias(name, alias).version)
            except Exception as exc:
                raise ModelLoadError(f"cannot resolve models:/{name}@{alias}: {exc}") from exc
            if version == self._current.info.version:
                return False
            new = load_registered(name, version, alias=alias, tracking_uri=self.tracking_uri)
            old, self._current = self._current, new  # one reference swap: readers see old or new
            log.info("model %s@%s: version %s -> %s", name, alias, old.info.version, version)
            return True
