"""P x K batches from the images table: P places (location + heading), K time-machine images of each.

Places are drawn from a per-epoch permutation seeded by (seed, epoch), so epoch e's batches are a pure
function of the seed: a resumed run regenerates the interrupted epoch and skips what was done.
A place needs at least 2 images (one positive pair); places with 2..K-1 images are filled up by
sampling their images again (with replacement; augmentation makes the repeats differ), places with
fewer than 2 are skipped and counted.

Three ways to choose a batch's P places (geoloc.model.train_config.BATCHES):
  random  P distinct places of the permutation.
  nearby  one place of the permutation (the anchor) and P - 1 places drawn from the anchor's
          NEARBY_POOL x (P - 1) nearest places of *other* locations, at most one per location, so
          the negatives of a batch are the streets around it, which a query is confused with; the
          other headings of a place's own location never sit in its batch (the evaluation counts
          them as correct answers, so they must not be pushed away as negatives).
  similar the same, with the pool of the places whose mean embeddings are nearest the anchor's
          (geoloc.model.proxies, from the previous epochs' steps) wherever they are; a place without
          one yet (the whole first epoch) gets its nearby pool.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..imagefile import image_file
from ..errors import ConfigError, InputError
from .train_config import check_batches

MIN_IMAGES_PER_PLACE = 2
NEARBY_POOL = 4  # a nearby batch draws its P - 1 places from the anchor's 4 x (P - 1) nearest places
NEARBY_BATCHES = ("nearby", "similar")  # the ways that draw a batch from its anchor's pool


def places_of(location_ids: np.ndarray, headings: np.ndarray) -> np.ndarray:
    """The place of each image numbered 0..n-1: one number per (location, heading) pair."""
    keys = np.asarray(location_ids, np.int64) * 1000 + np.asarray(headings, np.int64)
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


@dataclass
class SplitImages:
    """Image rows of one split as arrays; `place` numbers the (location, heading) pairs 0..n-1."""

    ids: np.ndarray
    location_ids: np.ndarray
    headings: np.ndarray
    is_query: np.ndarray
    versions: list[str]
    paths: list[str]  # root/path of each row: absolute when imported by `geoloc ingest images`
    place: np.ndarray = field(init=False)

    def __post_init__(self):
        self.place = places_of(self.location_ids, self.headings)

    def __len__(self) -> int:
        return len(self.ids)

    def files(self) -> list[Path]:
        return [Path(p) for p in self.paths]


def load_split(conn: Connection, split: str, versions: list[str] | None,
               include_queries: bool) -> SplitImages:
    rows = conn.execute(sqlfiles.text("model/split_images.sql"),
                        {"split": split, "versions": versions, "include_queries": include_queries}).all()
    return SplitImages(
        ids=np.array([r.id for r in rows], np.int64),
        location_ids=np.array([r.location_id for r in rows], np.int64),
        headings=np.array([r.heading for r in rows], np.int64),
        is_query=np.array([r.is_query for r in rows], bool),
        versions=[r.version for r in rows],
        paths=[str(image_file(r)) for r in rows],
    )


def location_xy(conn: Connection, location_ids: np.ndarray) -> np.ndarray:
    """(n, 2) metric coordinates of each entry of LOCATION_IDS (one row per image)."""
    unique = np.unique(location_ids)
    rows = conn.execute(sqlfiles.text("model/location_xy.sql"), {"ids": unique.tolist()}).all()
    xy = {r.id: (r.x, r.y) for r in rows}
    return np.array([xy[int(i)] for i in location_ids], np.float64).reshape(-1, 2)


class PKSampler:
    """Batches of `places` distinct places x `per_place` images (indices into the image arrays).

    With batches = "nearby", LOCATION_OF_IMAGE and XY_OF_IMAGE ((n, 2) metric coordinates of each
    image's location) place each batch around an anchor place (module docstring)."""

    def __init__(self, place_of_image: np.ndarray, places: int, per_place: int, seed: int,
                 batches: str = "random", location_of_image: np.ndarray | None = None,
                 xy_of_image: np.ndarray | None = None):
        check_batches(batches)
        if places < 2 or per_place < 2:
            raise ConfigError(f"a batch needs at least 2 places x 2 images (got {places} x {per_place})")
        order = np.argsort(place_of_image, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(place_of_image[order])) + 1) if len(order) else []
        self.groups = [g for g in groups if len(g) >= MIN_IMAGES_PER_PLACE]
        self.skipped_places = len(groups) - len(self.groups)
        self.short_places = sum(1 for g in self.groups if len(g) < per_place)
        if len(self.groups) < places:
            raise InputError(
                f"only {len(self.groups)} places with {MIN_IMAGES_PER_PLACE}+ images, fewer than --places {places}",
                hint="import more images ('geoloc ingest images') or lower --places",
            )
        self.places, self.per_place, self.seed = places, per_place, seed
        self.batches = batches
        self.pools: list[np.ndarray] | None = None
        self.location_of_place: np.ndarray | None = None
        if batches in NEARBY_BATCHES:
            if location_of_image is None or xy_of_image is None:
                raise ConfigError(f"{batches} batches need each image's location and its coordinates")
            first = np.array([g[0] for g in self.groups], np.int64)
            self.location_of_place = np.asarray(location_of_image)[first]
            locations = len(np.unique(self.location_of_place))
            if locations < places:
                raise InputError(f"only {locations} locations among the training "
                                 f"places, fewer than --places {places} for {batches} batches",
                                 hint="lower --places, or draw places at random with --batches random")
            self.pools = nearby_pools(np.asarray(xy_of_image, np.float64)[first], self.location_of_place,
                                      self.pool_size)

    @property
    def batch_size(self) -> int:
        return self.places * self.per_place

    @property
    def pool_size(self) -> int:
        return NEARBY_POOL * (self.places - 1)

    def epoch(self, epoch: int, steps: int,
              similar: list[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, labels), both (steps, P*K); labels are place numbers (indices into `groups`), equal
        within a place's K slots. SIMILAR: per place, the pool that replaces its nearby pool (None: keep
        it), for similar batches (geoloc.model.proxies.PlaceProxies.pools)."""
        rng = np.random.default_rng([self.seed, epoch])
        queue: deque[int] = deque()
        idx = np.empty((steps, self.batch_size), np.int64)
        lab = np.empty((steps, self.batch_size), np.int64)
        pools = self.pools
        if similar is not None and pools is not None:
            if len(similar) != len(pools):
                raise ValueError(f"{len(similar)} similar pools for {len(pools)} places")
            pools = [p if s is None else s for p, s in zip(pools, similar)]
        for s in range(steps):
            chosen = self._distinct_places(rng, queue, pools)
            for j, g in enumerate(chosen):
                members = self.groups[g]
                if len(members) >= self.per_place:
                    pick = rng.choice(members, self.per_place, replace=False)
                else:
                    extra = rng.choice(members, self.per_place - len(members), replace=True)
                    pick = rng.permutation(np.concatenate([members, extra]))
                idx[s, j * self.per_place:(j + 1) * self.per_place] = pick
                lab[s, j * self.per_place:(j + 1) * self.per_place] = g
        return idx, lab

    def _distinct_places(self, rng: np.random.Generator, queue: deque[int],
                         pools: list[np.ndarray] | None) -> list[int]:
        if pools is not None:
            return self._nearby_places(rng, queue, pools)
        chosen: list[int] = []
        held: list[int] = []  # already in this batch: kept for the next one, in order
        while len(chosen) < self.places:
            if not queue:
                queue.extend(rng.permutation(len(self.groups)).tolist())
            g = queue.popleft()
            (held if g in chosen else chosen).append(g)
        queue.extendleft(reversed(held))
        return chosen

    def _nearby_places(self, rng: np.random.Generator, queue: deque[int], pools: list[np.ndarray]) -> list[int]:
        """The next anchor of the permutation and up to P - 1 places of its pool, one per location;
        topped up from the permutation (other locations only) if the pool runs short."""
        if not queue:
            queue.extend(rng.permutation(len(self.groups)).tolist())
        anchor = queue.popleft()
        chosen, locations = [anchor], {int(self.location_of_place[anchor])}
        candidates = rng.permutation(pools[anchor]).tolist() + rng.permutation(len(self.groups)).tolist()
        for g in candidates:
            if len(chosen) == self.places:
                break
            if int(self.location_of_place[g]) not in locations:
                chosen.append(g)
                locations.add(int(self.location_of_place[g]))
        return chosen  # P places: __init__ checked that there are P locations


def nearby_pools(xy: np.ndarray, location: np.ndarray, size: int) -> list[np.ndarray]:
    """For each place (row of XY, metres), the SIZE nearest places of other locations, nearest first."""
    from scipy.spatial import cKDTree

    n = len(xy)
    same = np.bincount(np.unique(location, return_inverse=True)[1]).max()  # headings of the busiest location
    k = min(n, size + same)
    _, nearest = cKDTree(xy).query(xy, k=k)
    nearest = nearest.reshape(n, -1)
    return [row[location[row] != location[i]][:size] for i, row in enumerate(nearest)]
