"""Learned PCA-whitening of global descriptors, pure NumPy on row vectors (one descriptor per row).

Descriptors share a few dominant directions (lighting, sky, common structure) that carry little about
the place; centring on a training mean and rescaling every principal direction to unit variance stops
them from dominating the similarity. `geoloc train` fits it on the training split's embeddings and
keeps it inside the model when it helps on validation (geoloc.model.validate.keep_if_better);
`geoloc evaluate --post whiten` and `geoloc models whiten` (geoloc.retrieval) use the same fit.

Defaults were checked on the validation split (Validation v1, whitening fitted on Training v1): a
shrinkage from 0.03 to 0.3 with every dimension kept did equally well there, fewer dimensions did worse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_WHITEN_DIMS: int | None = None  # None: keep every dimension
DEFAULT_WHITEN_SHRINKAGE = 0.1  # added to each eigenvalue, as a share of the mean eigenvalue
NULL_VARIANCE = 1e-10  # directions with less variance than this share of the largest are dropped


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class Whitening:
    """A learned whitening: y = normalise((x - mean) @ projection)."""

    mean: np.ndarray  # (D,)
    projection: np.ndarray  # (D, d): principal directions, each divided by its regularised std

    @property
    def dims(self) -> int:
        return int(self.projection.shape[1])

    @property
    def bias(self) -> np.ndarray:
        """-mean @ projection: with it, y = normalise(x @ projection + bias) (a Dense layer, then L2)."""
        return -self.mean @ self.projection

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The whitened, L2-normalised rows of X."""
        return normalise((np.asarray(x, dtype=np.float64) - self.mean) @ self.projection)


def fit_whitening(x: np.ndarray, dims: int | None = DEFAULT_WHITEN_DIMS,
                  shrinkage: float = DEFAULT_WHITEN_SHRINKAGE) -> Whitening:
    """PCA-whitening fitted on the rows of X (N descriptors of dimension D).

    With the mean m = mean(X) and the covariance C = (X - m)^T (X - m) / N = U diag(l) U^T
    (eigenvalues l_1 >= l_2 >= ...), the projection keeps the first `dims` principal directions and
    divides each by its regularised standard deviation:

        P = U[:, :d] diag(l_i + shrinkage * mean(l))^(-1/2)

    so that (X - m) P has identity covariance on X when shrinkage is 0. Shrinkage regularises the
    small eigenvalues: whitening them fully would blow up directions that hold mostly noise; a large
    shrinkage tends to a plain PCA rotation. Directions without variance in X (below NULL_VARIANCE of
    the largest) are dropped, since nothing in X says how to scale them.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"whitening needs at least 2 descriptors, got {x.shape[0] if x.ndim == 2 else 0}")
    if dims is not None and dims < 1:
        raise ValueError(f"whitening dims {dims}: must be at least 1")
    if shrinkage < 0:
        raise ValueError(f"whitening shrinkage {shrinkage}: must be >= 0")
    mean = x.mean(axis=0)
    centred = x - mean
    eigval, eigvec = np.linalg.eigh(centred.T @ centred / x.shape[0])
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order]
    keep = eigval > NULL_VARIANCE * eigval[0] if eigval[0] > 0 else np.zeros_like(eigval, dtype=bool)
    if not keep.any():
        raise ValueError("whitening needs descriptors that differ: all are the same")
    reg = shrinkage * eigval.mean()
    eigval, eigvec = eigval[keep], eigvec[:, keep]
    d = eigval.size if dims is None else min(dims, eigval.size)
    return Whitening(mean, eigvec[:, :d] / np.sqrt(eigval[:d] + reg))

