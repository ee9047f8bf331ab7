"""Post-processing of global descriptors (e.g. GeM) that image retrieval applies after the network.

Pure NumPy, on row vectors (one descriptor per row); every function returns L2-normalised rows, so
cosine similarity is their inner product. Three classic steps, each optional:

- whitening learned on a training set (`fit_whitening`, `Whitening.apply`): descriptors share a few
  dominant directions (lighting, sky, common structure) that carry little about the place; centring on
  the training mean and rescaling the directions in which views of one place differ stops them from
  dominating the similarity.
- alpha query expansion (`alpha_qe`): the query is moved towards its best database matches, each
  weighted by its similarity to the power alpha, so confident matches pull harder than weak ones.
- database-side augmentation (`dba`): every database descriptor is likewise replaced by the weighted
  mean of itself and its nearest database neighbours, smoothing the database before querying it.

Defaults are defined once; `geoloc evaluate --post` shows and takes them from here. The whitening
itself (fit, apply and its defaults) is geoloc.model.whitening, shared with `geoloc train`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.whitening import (DEFAULT_WHITEN_DIMS, DEFAULT_WHITEN_SHRINKAGE, NULL_VARIANCE,  # noqa: F401
                               WHITEN_METHOD, Whitening, fit_whitening, normalise)

METHODS = ("whiten", "qe", "dba")  # the order they are combined in: whiten, then DBA, then QE
DEFAULT_ALPHA = 3.0  # exponent of the similarity weights of QE and DBA
DEFAULT_QE_N = 3  # database neighbours added to each query
DEFAULT_DBA_N = 3  # database neighbours averaged into each database vector
CHUNK_ROWS = 1024  # rows of a similarity matrix computed at once (bounded memory at any scale)


@dataclass(frozen=True)
class PostParams:
    """The parameters of the three steps (the library's defaults unless given)."""

    alpha: float = DEFAULT_ALPHA
    qe_n: int = DEFAULT_QE_N
    dba_n: int = DEFAULT_DBA_N
    whiten_dims: int | None = DEFAULT_WHITEN_DIMS
    whiten_shrinkage: float = DEFAULT_WHITEN_SHRINKAGE

    def problems(self) -> list[tuple[str, object, str]]:
        """(parameter, value, rule) of every parameter out of range; empty when all are fine."""
        out = []
        if not (np.isfinite(self.alpha) and self.alpha >= 0):
            out.append(("alpha", self.alpha, "must be a number >= 0"))
        for name in ("qe_n", "dba_n"):
            if getattr(self, name) < 1:
                out.append((name, getattr(self, name), "must be at least 1"))
        if self.whiten_dims is not None and self.whiten_dims < 1:
            out.append(("whiten_dims", self.whiten_dims, "must be at least 1"))
        if not (np.isfinite(self.whiten_shrinkage) and self.whiten_shrinkage >= 0):
            out.append(("whiten_shrinkage", self.whiten_shrinkage, "must be a number >= 0"))
        return out

    def to_json(self) -> dict:
        return {"alpha": self.alpha, "qe_n": self.qe_n, "dba_n": self.dba_n, "whiten_dims": self.whiten_dims,
                "whiten_shrinkage": self.whiten_shrinkage}


# ------------------------------------------------------------------------------- QE and DBA

def top_n(sims: np.ndarray, n: int) -> np.ndarray:
    """Column indices of the n largest values of every row of SIMS, largest first; equal values are
    ordered by column (the smaller index first), so the result does not depend on the sort used."""
    rows, cols = sims.shape
    n = min(n, cols)
    if n <= 0:
        return np.zeros((rows, 0), dtype=np.int64)
    if n == cols:
        return np.argsort(-sims, axis=1, kind="stable")
    part = np.argpartition(-sims, n - 1, axis=1)[:, :n]
    nth = np.take_along_axis(sims, part, axis=1).min(axis=1)
    idx = np.empty((rows, n), dtype=np.int64)
    tied = (sims >= nth[:, None]).sum(axis=1) > n  # values equal to the n-th outside the partition
    for r in np.where(tied)[0]:
        idx[r] = np.argsort(-sims[r], kind="stable")[:n]
    ok = np.where(~tied)[0]
    cand = np.sort(part[ok], axis=1)  # by column, so the stable sort below breaks ties by column
    order = np.argsort(-np.take_along_axis(sims[ok], cand, axis=1), axis=1, kind="stable")
    idx[ok] = np.take_along_axis(cand, order, axis=1)
    return idx


def weights(sims: np.ndarray, alpha: float) -> np.ndarray:
    """w(s) = s^alpha for a positive similarity s, 0 otherwise (a dissimilar vector adds nothing)."""
    pos = sims > 0
    return np.where(pos, np.where(pos, sims, 1.0) ** alpha, 0.0)


def _expand(base: np.ndarray, database: np.ndarray, n: int, alpha: float, exclude_self: bool) -> np.ndarray:
    """normalise(b + sum over the top n rows x of DATABASE by similarity s to b of w(s) x)."""
    base, database = normalise(base), normalise(database)
    n = min(n, database.shape[0] - 1) if exclude_self else n
    out = np.empty_like(base)
    for start in range(0, base.shape[0], CHUNK_ROWS):
        b = base[start:start + CHUNK_ROWS]
        sims = b @ database.T
        if exclude_self:
            rows = np.arange(b.shape[0])
            sims[rows, rows + start] = -np.inf
        nn = top_n(sims, n)
        w = weights(np.take_along_axis(sims, nn, axis=1), alpha)
        out[start:start + CHUNK_ROWS] = b + np.einsum("qn,qnd->qd", w, database[nn])
    return normalise(out)


def alpha_qe(queries: np.ndarray, database: np.ndarray, n: int = DEFAULT_QE_N,
             alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """alpha query expansion: each query q becomes

        q' = normalise(q + sum_{i=1..n} w(s_i) x_i),   w(s) = s^alpha if s > 0 else 0

    where x_1..x_n are its n most similar database vectors and s_i = q . x_i their cosine
    similarities (rows are normalised first). The query keeps weight 1; alpha = 0 is plain average
    query expansion (of the positively similar neighbours), a large alpha trusts only
    near-duplicates. Ties in similarity: lower row first.
    """
    return _expand(queries, database, n, alpha, exclude_self=False)


def dba(database: np.ndarray, n: int = DEFAULT_DBA_N, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Database-side augmentation: each database vector x becomes the weighted mean of itself and its
    n most similar other database vectors x_1..x_n, normalised:

        x' = normalise(x + sum_{i=1..n} w(s_i) x_i),   s_i = x . x_i,   w(s) = s^alpha if s > 0 else 0

    (the same weighting as `alpha_qe`, applied offline to the database; x itself has weight 1).
    """
    return _expand(database, database, n, alpha, exclude_self=True)


def postprocess(steps: tuple[str, ...], queries: np.ndarray, database: np.ndarray, params: PostParams,
                whitening: Whitening | None = None) -> tuple[np.ndarray, np.ndarray]:
    """QUERIES and DATABASE after STEPS (a subset of METHODS), applied in METHODS' order: whitening
    (needs WHITENING) of both, then DBA of the database, then QE of the queries against the
    (augmented) database. Rows come back L2-normalised."""
    unknown = set(steps) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown post-processing {', '.join(sorted(unknown))}: choose from {', '.join(METHODS)}")
    q, d = normalise(queries), normalise(database)
    if "whiten" in steps:
        if whitening is None:
            raise ValueError("whitening requested without a fitted Whitening")
        q, d = whitening.apply(q), whitening.apply(d)
    if "dba" in steps:
        d = dba(d, params.dba_n, params.alpha)
    if "qe" in steps:
        q = alpha_qe(q, d, params.qe_n, params.alpha)
    return q, d
