"""Validation during training, close to `geoloc evaluate` but not the same: the newest image per place
is the query and the rest the database, as there, but a hit is an image of the query's own location id
(evaluate counts any image within 25 m, so the two differ where locations lie within 25 m of each
other). Embeddings are computed in inference mode (BatchNorm running statistics)."""

from __future__ import annotations

import numpy as np

from ..thumbnail import SIZE as THUMBNAIL_SIZE, thumbnails_of_arrays

KS = (1, 5, 10)
DECIDED_ON = "recall@1"  # the validation figure a post-training choice must raise to be kept


def keep_if_better(before: dict, after: dict) -> tuple[bool, str]:
    """(keep, why): a change made after training (a whitening, a larger inference size) is kept only
    when it raises validation Recall@1 (BEFORE and AFTER are {"recall@1": ..., ...}); an equal or
    missing figure keeps the network as it was."""
    old, new = before.get(DECIDED_ON), after.get(DECIDED_ON)
    if old is None or new is None or not (np.isfinite(old) and np.isfinite(new)):
        return False, f"no validation {DECIDED_ON} to compare"
    if new > old:
        return True, f"val {DECIDED_ON} {old:.3f} -> {new:.3f}"
    return False, f"val {DECIDED_ON} {old:.3f} -> {new:.3f} is no gain"


def recall_at_k(query: np.ndarray, query_loc: np.ndarray, database: np.ndarray, database_loc: np.ndarray,
                ks=KS) -> dict[str, float]:
    """Share of queries with an image of their own location among the top k by cosine similarity.

    Embeddings must be L2-normalised (dot product = cosine similarity).
    """
    if len(query) == 0 or len(database) == 0:
        return {f"recall@{k}": float("nan") for k in ks}
    kmax = min(max(ks), len(database))
    sims = query @ database.T
    top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]
    order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, axis=1)
    hit = database_loc[top] == query_loc[:, None]
    return {f"recall@{k}": float(hit[:, :k].any(axis=1).mean()) for k in ks}


_RUNNERS: dict[tuple[int, int], object] = {}


def embed_cached(model, cache: np.ndarray, size: int, batch: int = 128) -> np.ndarray:
    """Embeddings of cached uint8 images resized to SIZE, inference mode (training=False), float32 (N, dim)."""
    import tensorflow as tf

    from .data import resize_for_model

    key = (id(model), size)
    if key not in _RUNNERS:  # one traced function per model, not one per validation
        _RUNNERS.clear()
        _RUNNERS[key] = tf.function(lambda x: model(resize_for_model(x, size), training=False),
                                    reduce_retracing=True)
    run = _RUNNERS[key]
    out = [run(tf.constant(cache[i:i + batch])).numpy() for i in range(0, len(cache), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


class Validator:
    """Holds the decoded validation images once per run and scores a model on them."""

    def __init__(self, cache: np.ndarray, location_ids: np.ndarray, is_query: np.ndarray, size: int):
        self.cache, self.loc, self.is_query, self.size = cache, location_ids, is_query.astype(bool), size

    @property
    def counts(self) -> dict[str, int]:
        return {"val_queries": int(self.is_query.sum()), "val_database": int((~self.is_query).sum()),
                "val_locations": int(len(np.unique(self.loc)))}

    def _score(self, emb: np.ndarray) -> dict[str, float]:
        q = self.is_query
        return recall_at_k(emb[q], self.loc[q], emb[~q], self.loc[~q])

    def __call__(self, model, size: int | None = None) -> dict[str, float]:
        """MODEL's figures on the cached images resized to SIZE (None: the training input size)."""
        return self._score(embed_cached(model, self.cache, size or self.size))

    def thumbnail_baseline(self, side: int = THUMBNAIL_SIZE) -> dict[str, float]:
        """The non-learned baseline on the same images: geoloc.thumbnail's vectors (as `evaluate` embeds them)."""
        return self._score(thumbnails_of_arrays(self.cache, side))
