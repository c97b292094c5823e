"""The model families the sweep tries, each as a scikit-learn pipeline over `model.features` vectors.

Every candidate is `StandardScaler -> classifier`. Probabilities are not the estimator's job: the
training run fits one temperature over the class scores (an SVM's one-vs-rest decision values, other
models' log-probabilities) on the validation split, see `model.openset`. A temperature cannot change
which class wins, only how confident the winner is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sklearn.base import ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier, VotingClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from model.features import N_FEATURES

SEED = 42


@dataclass(frozen=True)
class Candidate:
    family: str  # svm_linear, svm_rbf, svm_poly, random_forest, extra_trees, knn, mlp, mlp_ensemble
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.family}({args})"


def _base(candidate: Candidate) -> ClassifierMixin:
    p = dict(candidate.params)
    family = candidate.family
    if family == "svm_linear":  # liblinear: libsvm's linear kernel takes minutes on 20k rows
        return LinearSVC(max_iter=5000, random_state=SEED, **p)
    if family.startswith("svm_"):
        return SVC(kernel=family.removeprefix("svm_"), **p)
    if family == "random_forest":
        return RandomForestClassifier(random_state=SEED, n_jobs=1, **p)
    if family == "extra_trees":
        return ExtraTreesClassifier(random_state=SEED, n_jobs=1, **p)
    if family == "knn":
        return KNeighborsClassifier(**p)
    if family == "mlp":
        return _mlp(p, SEED)
    if family == "mlp_ensemble":
        # Members differ only in their seed (initial weights, minibatch order, early-stopping rows);
        # their averaged probabilities are steadier on new people than any one of them (docs/training.md).
        members = int(p.pop("members", 3))
        return VotingClassifier([(f"m{k}", _mlp(p, SEED + k)) for k in range(members)], voting="soft")
    raise ValueError(f"unknown model family {family!r}")


def _mlp(params: dict[str, Any], seed: int) -> MLPClassifier:
    rest = dict(params)
    hidden = tuple(int(h) for h in str(rest.pop("hidden", "128")).split("x"))
    return MLPClassifier(hidden_layer_sizes=hidden, early_stopping=True, max_iter=300, random_state=seed,
                         **rest)


def build(candidate: Candidate) -> Pipeline:
    """An unfitted pipeline for `candidate`: standardise, optionally project on the first `pca`
    principal components (any family), classify."""
    params = dict(candidate.params)
    components = params.pop("pca", None)
    steps: list[tuple[str, Any]] = [("scale", StandardScaler())]
    if components:
        # The 307 features are functions of 42 coordinates: 64 components keep 98.5 % of their
        # variance, and an RBF SVM's kernel product shrinks with the dimension (docs/training.md).
        # The covariance solver's fit_transform is its transform, so the support vectors are exactly
        # what their stored hands give again (model.support_hands).
        steps.append(("pca", PCA(int(components), svd_solver="covariance_eigh")))
    steps.append(("clf", _base(Candidate(candidate.family, params))))
    return Pipeline(steps)


def sweep(quick: bool = False) -> list[Candidate]:
    """The grid: SVMs (rbf, poly), KNN and an MLP. Random forests and extra trees (never competitive
    here) and the linear SVM (val macro-F1 0.91 on v1 features; liblinear needs ~8 min per fit on the
    307 features of v2, 14 fits with LOSO) are not swept; `--candidate` still trains any of them."""
    if quick:
        return [
            Candidate("svm_poly", {"C": 100, "degree": 2}),
            Candidate("svm_rbf", {"C": 100, "gamma": "scale"}),
            Candidate("knn", {"n_neighbors": 3}),
        ]
    # Every candidate is also scored leave-one-source-out (13 refits), so the grid is kept to the
    # families and settings that were competitive on validation before (docs/training.md).
    # Features are standardised, so gamma="scale" is 1/N_FEATURES; half of it is a smoother boundary.
    half_scale = round(0.5 / N_FEATURES, 6)
    grid: list[Candidate] = []
    grid += [Candidate("svm_rbf", {"C": c, "gamma": g})
             for c in (30, 100, 300) for g in ("scale", half_scale)]
    grid += [Candidate("svm_poly", {"C": 100, "degree": 2})]
    grid += [Candidate("knn", {"n_neighbors": 5, "weights": "distance"})]
    grid += [Candidate("mlp", {"hidden": "256x128", "alpha": 1e-4})]
    return grid


# An MLP keeps its optimiser's moments and a copy of its best weights after fitting: three times the
# weights themselves, needed only to continue training, which nothing here does.
_TRAINING_STATE = ("_optimizer", "_best_coefs", "_best_intercepts")


def drop_training_state(estimator: Any) -> Any:
    """`estimator` without what only further fitting would use (in place; returned for chaining)."""
    parts = [estimator]
    while parts:
        part = parts.pop()
        parts += [step for _, step in getattr(part, "steps", [])]
        parts += list(getattr(part, "estimators_", []))
        for name in _TRAINING_STATE:
            if hasattr(part, name):
                delattr(part, name)
    return estimator

