"""Adaptive H3 partitionings of the training images into geo-cells, stored in PostGIS.

As GeoEstimation does with S2 cells: start with the H3 cells of resolution min_res that hold training
images, split every cell holding more than img_max images into its children (down to max_res, whose
cells are kept however full), and drop the cells holding fewer than img_min. One partitioning per
img_max; a partition NAME holds `levels` of them, coarse to fine (img_max divided by `ratio` per level).

Membership follows the H3 index hierarchy: a location belongs to the cell of a level that is an
ancestor (or equal) of its resolution-max_res cell. A cell's polygon is the exact union of its
max_res descendants, so it contains every location assigned to it (an H3 hexagon alone does not
cover all of its children's area). A finer level's cell always lies inside one cell of the coarser
level (its parent_id): a finer img_max splits at least as deep, and a kept cell's ancestor holds at
least as many images. Every location of every split gets its cell per level in location_cells.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass

import h3
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import transaction
from ..errors import AlreadyExists, ConfigError, InputError, NotFound

DEFAULT_IMG_MIN = 25      # about one place's time-machine images (27 per location on average)
DEFAULT_IMG_MAX = 900     # coarsest level: about a district at res 7 (~5 km2) for Stockholm's density
DEFAULT_LEVELS = 3        # 900 / 300 / 100 images: districts, neighbourhoods (res 8), blocks (res 9-10)
DEFAULT_RATIO = 3.0
DEFAULT_MIN_RES = 7
DEFAULT_MAX_RES = 10      # ~66 m hexagon edge: about a block
DEFAULT_SPLIT = "train"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass
class Settings:
    img_min: int = DEFAULT_IMG_MIN
    img_max: int = DEFAULT_IMG_MAX
    levels: int = DEFAULT_LEVELS
    ratio: float = DEFAULT_RATIO
    min_res: int = DEFAULT_MIN_RES
    max_res: int = DEFAULT_MAX_RES

    def maxima(self) -> list[int]:
        """img_max of each level, coarse to fine."""
        return [int(round(self.img_max / self.ratio ** level)) for level in range(self.levels)]

    def check(self) -> None:
        if self.img_min < 1:
            raise ConfigError(f"--img-min {self.img_min}: must be at least 1")
        if self.levels < 1 or self.levels > 8:
            raise ConfigError(f"--levels {self.levels}: must be between 1 and 8")
        if self.levels > 1 and self.ratio <= 1:
            raise ConfigError(f"--ratio {self.ratio:g}: must be above 1 (each level splits finer)")
        if not 0 <= self.min_res <= self.max_res <= 15:
            raise ConfigError(f"--min-res {self.min_res} / --max-res {self.max_res}: need 0 <= min <= max <= 15")
        finest = self.maxima()[-1]
        if finest <= self.img_min:
            raise ConfigError(f"the finest level's img_max ({finest}) must exceed --img-min {self.img_min}",
                              hint="raise --img-max, lower --levels or --ratio, or lower --img-min")


@dataclass
class LevelSummary:
    level: int
    img_max: int
    cells: int
    resolutions: dict[int, int]  # resolution -> cells
    images: int  # training images inside kept cells
    dropped_images: int  # training images in cells under img_min


@dataclass
class PartitionSummary:
    name: str
    partition_id: int
    split: str
    images: int
    settings: Settings
    levels: list[LevelSummary]
    located: int  # locations (all splits) assigned to a finest-level cell
    replaced: str | None  # what happened to an older partition of the same name

    def to_json(self) -> dict:
        return {"name": self.name, "partition_id": self.partition_id, "split": self.split, "images": self.images,
                "img_min": self.settings.img_min, "img_max": self.settings.maxima(),
                "min_res": self.settings.min_res, "max_res": self.settings.max_res,
                "levels": [vars(lv) for lv in self.levels], "located_locations": self.located,
                "replaced": self.replaced}


# ---------------------------------------------------------------------------------------- pure H3 side

def adaptive_cells(counts: dict[str, int], img_min: int, img_max: int, min_res: int) -> dict[str, int]:
    """The kept cells {h3: images} of one level from image counts per max_res cell.

    Starts from the min_res ancestors of the counted cells and splits every cell over img_max into its
    children until max_res (the counts' resolution); cells under img_min are dropped.
    """
    if not counts:
        return {}
    max_res = h3.get_resolution(next(iter(counts)))
    by_res: list[dict[str, int]] = [defaultdict(int) for _ in range(max_res + 1)]
    for cell, n in counts.items():
        for res in range(min_res, max_res + 1):
            by_res[res][h3.cell_to_parent(cell, res) if res < max_res else cell] += n
    kept: dict[str, int] = {}
    stack = sorted(by_res[min_res].items())
    while stack:
        cell, n = stack.pop()
        res = h3.get_resolution(cell)
        if n > img_max and res < max_res:
            stack.extend((c, by_res[res + 1][c]) for c in sorted(h3.cell_to_children(cell, res + 1))
                         if c in by_res[res + 1])
        elif n >= img_min:
            kept[cell] = n
    return kept


def cell_of(finest: str, kept: dict[str, int] | set[str], min_res: int) -> str | None:
    """The kept cell that is FINEST's ancestor (or FINEST itself), None when there is none."""
    for res in range(h3.get_resolution(finest), min_res - 1, -1):
        cell = h3.cell_to_parent(finest, res) if res < h3.get_resolution(finest) else finest
        if cell in kept:
            return cell
    return None


def cell_polygon(cell: str, max_res: int) -> str:
    """GeoJSON of the union of CELL's descendants at max_res (lng, lat; Polygon or MultiPolygon)."""
    cells = [cell] if h3.get_resolution(cell) == max_res else h3.cell_to_children(cell, max_res)
    return json.dumps(h3.h3shape_to_geo(h3.cells_to_h3shape(cells)))


# ---------------------------------------------------------------------------------------- database side

def check_name(name: str) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InputError(f"invalid partition name {name!r}: use {NAME_RULE}")
    return name


def build_partition(name: str, img_min: int = DEFAULT_IMG_MIN, img_max: int = DEFAULT_IMG_MAX,
                    levels: int = DEFAULT_LEVELS, ratio: float = DEFAULT_RATIO, min_res: int = DEFAULT_MIN_RES,
                    max_res: int = DEFAULT_MAX_RES, split: str = DEFAULT_SPLIT, replace: bool = False,
                    conn: Connection | None = None) -> PartitionSummary:
    """Build partition NAME from the images of SPLIT and store its cells and every location's cell.

    Everything happens in one transaction: a rebuild (replace=True) builds the new partition and
    swaps it in at commit, so readers see the old or the new one, never half of either. An old
    partition that a model's cell heads use is kept under the name NAME~<old id>; otherwise deleted.
    With CONN the work is part of the caller's transaction instead.
    """
    check_name(name)
    settings = Settings(int(img_min), int(img_max), int(levels), float(ratio), int(min_res), int(max_res))
    settings.check()
    if split not in ("train", "val", "test"):
        raise InputError(f"--split '{split}': must be one of train, val, test")
    with transaction(conn) as conn:
        old = conn.execute(sqlfiles.text("cells/partition_by_name.sql"), {"name": name}).first()
        if old is not None and not replace:
            raise AlreadyExists(f"cell partition '{name}' already exists",
                                hint="rebuild it with --replace (models trained on it keep the old one)")
        rows = conn.execute(sqlfiles.text("cells/location_counts.sql"), {"split": split}).all()
        counts: dict[str, int] = defaultdict(int)
        finest_of: dict[int, str] = {}
        weighted: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
        for r in rows:
            finest = h3.latlng_to_cell(r.lat, r.lng, settings.max_res)
            finest_of[r.location_id] = finest
            if r.images:
                counts[finest] += r.images
                w = weighted[finest]
                w[0] += r.lat * r.images
                w[1] += r.lng * r.images
                w[2] += r.images
        total = sum(counts.values())
        if total == 0:
            raise InputError(f"no images in split '{split}' to partition",
                             hint="import images first: geoloc ingest images DIR")
        replaced = None
        if old is not None:
            replaced = _retire(conn, old)
        partition_id = conn.execute(sqlfiles.text("cells/insert_partition.sql"), {
            "name": name, "levels": settings.levels, "img_min": settings.img_min, "img_max": settings.maxima(),
            "min_res": settings.min_res, "max_res": settings.max_res, "split": split, "images": total}).scalar_one()
        summaries, located = [], 0
        previous: dict[str, int] = {}
        for level, level_max in enumerate(settings.maxima()):
            kept = adaptive_cells(counts, settings.img_min, level_max, settings.min_res)
            if not kept:
                raise InputError(f"level {level} (img_max {level_max}) keeps no cell: every cell holds fewer "
                                 f"than --img-min {settings.img_min} of the {total} images",
                                 hint="lower --img-min or raise --img-max")
            ids = _insert_level(conn, partition_id, level, kept, previous, weighted, settings)
            assigned = {loc: cell_of(f, kept, settings.min_res) for loc, f in finest_of.items()}
            assigned = {loc: c for loc, c in assigned.items() if c is not None}
            conn.execute(sqlfiles.text("cells/insert_location_cells.sql"), {
                "partition_id": partition_id, "level": level, "location_id": list(assigned),
                "cell_id": [ids[c] for c in assigned.values()]})
            located = len(assigned)
            res_count: dict[int, int] = defaultdict(int)
            for c in kept:
                res_count[h3.get_resolution(c)] += 1
            summaries.append(LevelSummary(level, level_max, len(kept), dict(sorted(res_count.items())),
                                          sum(kept.values()), total - sum(kept.values())))
            previous = ids
    return PartitionSummary(name, partition_id, split, total, settings, summaries, located, replaced)


def _retire(conn, old) -> str:
    used = conn.execute(sqlfiles.text("cells/partition_used.sql"), {"partition_id": old.id}).scalar_one()
    if used:
        aside = f"{old.name}~{old.id}"
        conn.execute(sqlfiles.text("cells/rename_partition.sql"), {"partition_id": old.id, "name": aside})
        return f"kept as '{aside}' (used by {used} model(s))"
    conn.execute(sqlfiles.text("cells/delete_partition.sql"), {"partition_id": old.id})
    return "deleted"


def _insert_level(conn, partition_id: int, level: int, kept: dict[str, int], previous: dict[str, int],
                  weighted: dict, settings: Settings) -> dict[str, int]:
    """Insert one level's cells (class index = position in h3 order); returns {h3: cell id}."""
    cells = sorted(kept)
    parent_ids, lats, lngs = [], [], []
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for finest, w in weighted.items():
        c = cell_of(finest, kept, settings.min_res)
        if c is not None:
            s = sums[c]
            s[0] += w[0]
            s[1] += w[1]
            s[2] += w[2]
    for c in cells:
        parent = cell_of(c, previous, settings.min_res) if previous else None
        parent_ids.append(previous[parent] if parent else None)
        s = sums[c]  # centroid: the mean position of the cell's training images
        lats.append(s[0] / s[2])
        lngs.append(s[1] / s[2])
    rows = conn.execute(sqlfiles.text("cells/insert_cells.sql"), {
        "partition_id": partition_id, "level": level, "class_index": list(range(len(cells))), "h3": cells,
        "resolution": [h3.get_resolution(c) for c in cells], "parent_id": parent_ids,
        "images": [kept[c] for c in cells], "geojson": [cell_polygon(c, settings.max_res) for c in cells],
        "lat": lats, "lng": lngs}).all()
    return {r.h3: r.id for r in rows}


def get_partition(conn, name: str):
    row = conn.execute(sqlfiles.text("cells/partition_by_name.sql"), {"name": name}).first()
    if row is None:
        raise NotFound(f"cell partition '{name}' not found", hint="build it with 'geoloc cells build NAME'")
    return row


def list_partitions(conn: Connection | None = None) -> list[dict]:
    """Every partition with its cells per level."""
    with transaction(conn) as conn:
        return [dict(r._mapping) for r in conn.execute(sqlfiles.text("cells/list_partitions.sql")).all()]
