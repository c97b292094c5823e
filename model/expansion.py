"""An RBF SVM's one-vs-one decisions served from fewer kernel evaluations (a reduced set).

The shipped SVM keeps ~10k support vectors: every hand pays one kernel value per support vector, and
each class pair's decision sums over that pair's vectors. With a small gamma the kernel is smooth, so
the same decision function is spanned, within a few hundredths of a decision value, by the kernel at a
few thousand of the support vectors: `dec(z) ~= K(z, B) @ W + bias`. `B` is chosen by pivoted Cholesky
of the support vectors' kernel matrix (each next basis vector is the one the chosen ones explain least);
`W` is fitted by least squares to the exact decisions at the support vectors, at points between two
support vectors of one class, and at support vectors moved a little, so it needs nothing but the model
itself (`gesture-maze train` and `retrain` compile it the same way). Serving checks nothing about the
fit: the training run measures how often the expansion answers like the exact SVM and ships it only
above `MIN_AGREEMENT` (docs/decisions/0027-a-smaller-kernel-expansion.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPANSION_FILE = "expansion.npz"
DEFAULT_SIZE = 4000  # basis vectors: ~1.8x less arithmetic than 10k support vectors, answers 99.9 % the same
MIN_AGREEMENT = 0.998  # share of hands that must get the exact SVM's answer for the expansion to ship
_RIDGE = 1e-9  # relative to the mean diagonal of the normal equations: only keeps the solve stable
_JITTER = 0.3  # standard deviation (standardised feature units) of the moved support vectors
_BETWEEN_PER_SV = 4  # points between two same-class support vectors, per support vector
_BLOCK = 4096  # rows per block when accumulating the normal equations (bounded memory)


class ExpansionError(ValueError):
    """A stored expansion that does not fit the SVM it is meant for."""


@dataclass(frozen=True)
class KernelExpansion:
    """`basis`: indices into the SVM's support vectors; `weights` (m, n_pairs) and `bias` (n_pairs,)
    give the one-vs-one decisions (the SVC's own pair order) from the kernel values at the basis.
    `agreement`: share of the checking hands answered as the exact SVM answers them (NaN unmeasured)."""

    basis: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    agreement: float = float("nan")

    @property
    def size(self) -> int:
        return len(self.basis)

    def with_agreement(self, agreement: float) -> KernelExpansion:
        return KernelExpansion(self.basis, self.weights, self.bias, float(agreement))

    def save(self, path: Path) -> Path:
        np.savez_compressed(path, basis=self.basis.astype(np.int32), weights=self.weights.astype(np.float32),
                            bias=self.bias.astype(np.float64), agreement=np.float64(self.agreement))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> KernelExpansion:
        with np.load(path, allow_pickle=False) as f:
            return cls(np.asarray(f["basis"], dtype=np.intp), np.asarray(f["weights"], dtype=np.float32),
                       np.asarray(f["bias"], dtype=np.float64), float(f["agreement"]))

    def check(self, n_support: int, n_pairs: int) -> None:
        """Raise `ExpansionError` unless it indexes `n_support` support vectors and gives `n_pairs`."""
        basis = self.basis
        if basis.ndim != 1 or not len(basis) or basis.min() < 0 or basis.max() >= n_support:
            raise ExpansionError(f"basis indices outside the model's {n_support} support vectors")
        if self.weights.shape != (len(self.basis), n_pairs) or self.bias.shape != (n_pairs,):
            raise ExpansionError(f"expected ({len(self.basis)}, {n_pairs}) weights and ({n_pairs},) bias, "
                                 f"got {self.weights.shape} and {self.bias.shape}")
        if not (np.isfinite(self.weights).all() and np.isfinite(self.bias).all()):
            raise ExpansionError("non-finite weights")


def rbf(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """(N, d) x (M, d) -> (N, M) exp(-gamma * |a - b|^2)."""
    d2 = np.einsum("ij,ij->i", a, a)[:, None] - 2.0 * a @ b.T + np.einsum("ij,ij->i", b, b)[None, :]
    return np.exp(-gamma * np.maximum(d2, 0.0))


def choose_basis(vectors: np.ndarray, gamma: float, size: int) -> np.ndarray:
    """Indices of `size` rows of `vectors` by pivoted Cholesky of their RBF kernel matrix: each next
    row is the one whose kernel column the chosen rows reproduce worst (largest residual diagonal)."""
    n = len(vectors)
    size = min(size, n)
    factor = np.zeros((n, size))
    residual = np.ones(n)  # K(x, x) = 1 for the RBF kernel
    chosen = np.empty(size, dtype=np.intp)
    for k in range(size):
        i = int(np.argmax(residual))
        chosen[k] = i
        column = rbf(vectors, vectors[i:i + 1], gamma)[:, 0] - factor[:, :k] @ factor[i, :k]
        factor[:, k] = column / np.sqrt(max(residual[i], 1e-300))
        residual -= factor[:, k] ** 2
        residual[chosen[:k + 1]] = -np.inf  # never chosen twice
    return chosen


def fitting_rows(vectors: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where the expansion is fitted: the support vectors, points between two support vectors of one
    class (where that class's hands lie) and support vectors moved a little (around them)."""
    n = len(vectors)
    first = rng.integers(0, n, _BETWEEN_PER_SV * n)
    members = [np.flatnonzero(classes == c) for c in range(int(classes.max()) + 1)]
    second = np.array([members[classes[i]][rng.integers(0, len(members[classes[i]]))] for i in first])
    w = rng.uniform(0.0, 1.0, (len(first), 1))
    between = w * vectors[first] + (1.0 - w) * vectors[second]
    moved = vectors + rng.normal(0.0, _JITTER, vectors.shape)
    return np.vstack([vectors, between, moved])


def fit_expansion(exact: Callable[[np.ndarray], np.ndarray], vectors: np.ndarray, classes: np.ndarray,
                  gamma: float, size: int = DEFAULT_SIZE, seed: int = 0) -> KernelExpansion:
    """The expansion of an RBF SVM. `exact(Z)`: (N, d) -> (N, n_pairs) its one-vs-one decisions;
    `vectors` its support vectors (n_sv, d) and `classes` each one's class index."""
    basis = choose_basis(vectors, gamma, size)
    at = vectors[basis]
    rows = fitting_rows(vectors, np.asarray(classes), np.random.default_rng(seed))
    normal = np.zeros((len(basis) + 1, len(basis) + 1))
    rhs: np.ndarray | None = None
    for start in range(0, len(rows), _BLOCK):
        block = rows[start:start + _BLOCK]
        k = np.hstack([rbf(block, at, gamma), np.ones((len(block), 1))])
        target = exact(block)
        normal += k.T @ k
        rhs = k.T @ target if rhs is None else rhs + k.T @ target
    assert rhs is not None
    normal[np.diag_indices_from(normal)] += _RIDGE * np.trace(normal) / len(normal)
    solution = np.linalg.solve(normal, rhs)
    return KernelExpansion(basis, solution[:-1].astype(np.float32), solution[-1].astype(np.float64))
