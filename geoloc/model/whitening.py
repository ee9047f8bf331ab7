"""Whitening of global descriptors learned on a training set, pure NumPy on row vectors (one
descriptor per row).

Descriptors share a few dominant directions (lighting, sky, common structure) that carry little about
the place; centring on a training mean and rescaling those directions stops them from dominating the
similarity. Two fits, one function (`fit_whitening`):

  PCA       without labels: every principal direction of the descriptors rescaled to unit variance.
  learned   with the place of each descriptor (the "learned whitening" of Radenovic, Tolias and Chum,
            Fine-tuning CNN image retrieval with no human annotation, TPAMI 2018): the directions in
            which views of *one* place differ (season, light, a few metres of shift) are rescaled, so
            those in which places differ stand out.

`geoloc train` fits the learned one on the training split's embeddings and places (location + heading)
and keeps it inside the model when it helps on validation (geoloc.model.validate.keep_if_better);
`geoloc evaluate --post whiten` and `geoloc models whiten` (geoloc.retrieval) fit it on a split's
stored embeddings the same way.

Defaults were checked on the validation split (Validation v1, fitted on Training v1): a shrinkage from
0.03 to 0.3 with every dimension kept did equally well there, fewer dimensions did worse; the learned
whitening did as well as PCA's on val and better on Test v1 on two models (benchmarks/embed_side.py;
figures in benchmarks/README.md, "Learned whitening").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_WHITEN_DIMS: int | None = None  # None: keep every dimension
DEFAULT_WHITEN_SHRINKAGE = 0.1  # added to each eigenvalue, as a share of the mean eigenvalue
WHITEN_METHOD = "learned (within-place scatter)"  # what the stored checks and runs say of the fit
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
                  shrinkage: float = DEFAULT_WHITEN_SHRINKAGE, places: np.ndarray | None = None) -> Whitening:
    """A whitening fitted on the rows of X (N descriptors of dimension D): PCA's without PLACES, the
    learned one with PLACES (one label per row: the place the descriptor shows).

    With the mean m = mean(X) and a covariance C = U diag(l) U^T (eigenvalues l_1 >= l_2 >= ...), the
    projection divides each direction by its regularised standard deviation:

        P = U diag(l_i + shrinkage * mean(l))^(-1/2)

    PCA: C = (X - m)^T (X - m) / N, so that (X - m) P has identity covariance on X when shrinkage is 0.
    Learned: C = the within-place scatter, sum over places p of sum_{i in p} (x_i - m_p)(x_i - m_p)^T / n
    (m_p: the place's mean; n: the rows of places with two or more rows, the only ones that say how views
    of one place differ). P is then rotated onto the principal directions of the whitened rows (X - m) P,
    largest first, so that the first directions are those in which places differ most.

    The first `dims` directions are kept (None: all). Shrinkage regularises the small eigenvalues:
    whitening them fully would blow up directions that hold mostly noise; a large shrinkage tends to a
    plain rotation. Directions without variance in C (below NULL_VARIANCE of the largest) are dropped,
    since nothing in X says how to scale them.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"whitening needs at least 2 descriptors, got {x.shape[0] if x.ndim == 2 else 0}")
    if dims is not None and dims < 1:
        raise ValueError(f"whitening dims {dims}: must be at least 1")
    if shrinkage < 0:
        raise ValueError(f"whitening shrinkage {shrinkage}: must be >= 0")
    mean = x.mean(axis=0)
    if places is None:
        centred = x - mean
    else:
        centred = _centred_on_places(x, places)
    eigval, eigvec = _eig_descending(centred.T @ centred / centred.shape[0])
    keep = eigval > NULL_VARIANCE * eigval[0] if eigval[0] > 0 else np.zeros_like(eigval, dtype=bool)
    if not keep.any():
        raise ValueError("whitening needs descriptors that differ: all are the same" if places is None else
                         "learned whitening needs views of a place that differ: all are the same")
    reg = shrinkage * eigval.mean()
    projection = eigvec[:, keep] / np.sqrt(eigval[keep] + reg)
    if places is not None:
        white = (x - mean) @ projection
        projection = projection @ _eig_descending(white.T @ white / x.shape[0])[1]
    d = projection.shape[1] if dims is None else min(dims, projection.shape[1])
    return Whitening(mean, projection[:, :d])


def _eig_descending(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0) and eigenvectors (columns) of the symmetric C, largest first."""
    eigval, eigvec = np.linalg.eigh(c)
    order = np.argsort(eigval)[::-1]
    return np.clip(eigval[order], 0.0, None), eigvec[:, order]


def _centred_on_places(x: np.ndarray, places: np.ndarray) -> np.ndarray:
    """The rows of X whose place has two or more rows, each minus its place's mean."""
    places = np.asarray(places)
    if places.shape != (x.shape[0],):
        raise ValueError(f"learned whitening needs one place per descriptor: {places.shape[0] if places.ndim else 0} "
                         f"places for {x.shape[0]} descriptors")
    _, index, counts = np.unique(places, return_inverse=True, return_counts=True)
    shared = counts[index] >= 2
    if not shared.any():
        raise ValueError("learned whitening needs a place with at least 2 descriptors")
    sums = np.zeros((counts.size, x.shape[1]))
    np.add.at(sums, index, x)
    return x[shared] - (sums / counts[:, None])[index[shared]]
