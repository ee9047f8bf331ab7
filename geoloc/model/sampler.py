"""P x K batches from the images table: P places (location + heading), K time-machine images of each.

Places are drawn from a per-epoch permutation seeded by (seed, epoch), so epoch e's batches are a pure
function of the seed: a resumed run regenerates the interrupted epoch and skips what was done.
A place needs at least 2 images (one positive pair); places with 2..K-1 images are filled up by
sampling their images again (with replacement; augmentation makes the repeats differ), places with
fewer than 2 are skipped and counted.
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

MIN_IMAGES_PER_PLACE = 2


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
        keys = self.location_ids.astype(np.int64) * 1000 + self.headings.astype(np.int64)
        _, self.place = np.unique(keys, return_inverse=True)

    def __len__(self) -> int:
        return len(self.ids)

    def files(self) -> list[Path]:
        return [Path(p) for p in self.paths]


def load_split(conn: Connection, split: str, versions: list[str] | None = None,
               include_queries: bool = False) -> SplitImages:
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


class PKSampler:
    """Batches of `places` distinct places x `per_place` images (indices into the image arrays)."""

    def __init__(self, place_of_image: np.ndarray, places: int, per_place: int, seed: int):
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

    @property
    def batch_size(self) -> int:
        return self.places * self.per_place

    def epoch(self, epoch: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, labels), both (steps, P*K); labels are place numbers, equal within a place's K slots."""
        rng = np.random.default_rng([self.seed, epoch])
        queue: deque[int] = deque()
        idx = np.empty((steps, self.batch_size), np.int64)
        lab = np.empty((steps, self.batch_size), np.int64)
        for s in range(steps):
            chosen = self._distinct_places(rng, queue)
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

    def _distinct_places(self, rng: np.random.Generator, queue: deque[int]) -> list[int]:
        chosen: list[int] = []
        held: list[int] = []  # already in this batch: kept for the next one, in order
        while len(chosen) < self.places:
            if not queue:
                queue.extend(rng.permutation(len(self.groups)).tolist())
            g = queue.popleft()
            (held if g in chosen else chosen).append(g)
        queue.extendleft(reversed(held))
        return chosen
