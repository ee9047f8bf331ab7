"""Place proxies: each training place's mean embedding, gathered from the training steps themselves.

`--batches similar` places a batch around an anchor place by what the network confuses it with
anywhere in the city, not by distance: the anchor's pool is its nearest places *in embedding space*
(other locations only), after the global proxy-based hard mining of Ali-bey et al. (BMVC 2024). The
proxies cost no extra forward pass: every training step's embeddings are added to their places'
sums, and at the end of each complete epoch the sums become the proxies (L2-normalised means) the
next epoch's batches are drawn from. A place not seen yet keeps its last proxy, or has none and is
placed by distance (geoloc.model.sampler.nearby_pools). Both the proxies and the epoch's running sums
are saved with every checkpoint, so a resumed run draws the same batches.
"""

from __future__ import annotations

import numpy as np


class PlaceProxies:
    """Proxies (n places x dim) used by the current epoch, and the sums of the embeddings seen in it."""

    def __init__(self, places: int):
        self.places = places
        self.proxies: np.ndarray | None = None  # (places, dim), a zero row for a place never seen
        self.sums: np.ndarray | None = None
        self.counts = np.zeros(places, np.int64)

    @property
    def known(self) -> np.ndarray:
        """Which places have a proxy."""
        if self.proxies is None:
            return np.zeros(self.places, bool)
        return np.abs(self.proxies).sum(axis=1) > 0

    def add(self, places: np.ndarray, embeddings: np.ndarray) -> None:
        """Add one step's EMBEDDINGS (n, dim) to the sums of their PLACES (n, place numbers)."""
        embeddings = np.asarray(embeddings, np.float32)
        if self.sums is None:
            self.sums = np.zeros((self.places, embeddings.shape[1]), np.float32)
        places = np.asarray(places, np.int64)
        np.add.at(self.sums, places, embeddings)
        np.add.at(self.counts, places, 1)

    def commit(self) -> None:
        """End of an epoch: every place seen in it gets its mean embedding as proxy; the sums restart."""
        if self.sums is None:
            return
        if self.proxies is None:
            self.proxies = np.zeros_like(self.sums)
        seen = self.counts > 0
        mean = self.sums[seen]
        self.proxies[seen] = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        self.sums[:] = 0
        self.counts[:] = 0

    def pools(self, location_of_place: np.ndarray, size: int) -> list[np.ndarray | None]:
        """For each place with a proxy, the SIZE places of other locations with the most similar
        proxies, in place order (a batch draws from the pool as a set, so rounding that swaps two
        similarities inside it changes nothing); None for a place without one."""
        known = self.known
        out: list[np.ndarray | None] = [None] * self.places
        if not known.any():
            return out
        rows = np.flatnonzero(known)
        sims = self.proxies[rows] @ self.proxies[rows].T
        location = np.asarray(location_of_place)[rows]
        for i, row in enumerate(rows):
            order = np.argsort(-sims[i], kind="stable")
            out[row] = np.sort(rows[order[location[order] != location[i]][:size]])
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """What a checkpoint stores (load restores it)."""
        out = {"counts": self.counts}
        if self.proxies is not None:
            out["proxies"] = self.proxies
        if self.sums is not None:
            out["sums"] = self.sums
        return out

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        counts = np.asarray(arrays.get("counts", np.zeros(self.places, np.int64)), np.int64)
        if counts.shape != (self.places,):
            raise ValueError(f"proxies of {counts.shape[0]} places, the run has {self.places}")
        self.counts = counts.copy()
        self.proxies = np.array(arrays["proxies"], np.float32) if "proxies" in arrays else None
        self.sums = np.array(arrays["sums"], np.float32) if "sums" in arrays else None
