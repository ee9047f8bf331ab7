"""What a training run reads before its first step: the split's images decoded into RAM, the P x K
sampler, the cell labels (with --cells) and the validation images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputError
from .train_config import TrainConfig


@dataclass
class TrainData:
    train: object
    sampler: object
    cache: np.ndarray
    validator: object | None
    counts: dict = field(default_factory=dict)
    cells: object | None = None  # geoloc.model.cell_heads.CellLabels with --cells
    proxies: object | None = None  # geoloc.model.proxies.PlaceProxies with --batches similar


def prepare_data(conn, cfg: TrainConfig, report: Callable[[str, dict], None]) -> TrainData:
    """Load and decode; REPORT("decoding", {"split", "images"}) before each split is decoded.

    Sets cfg.cells_partition_id when the run has cell heads. InputError for an empty split, too few
    places or a validation split without query and database images.
    """
    from .data import cache_side, decode_cache
    from .proxies import PlaceProxies
    from .sampler import NEARBY_BATCHES, PKSampler, load_split, location_xy
    from .validate import Validator

    train = load_split(conn, cfg.split, cfg.versions, cfg.include_queries)
    if len(train) == 0:
        raise InputError(f"no images in split '{cfg.split}'"
                         + (f" (versions {', '.join(cfg.versions)})" if cfg.versions else ""),
                         hint="import images first: geoloc ingest images DIR")
    xy = location_xy(conn, train.location_ids) if cfg.batches in NEARBY_BATCHES else None
    sampler = PKSampler(train.place, cfg.places, cfg.per_place, cfg.seed, cfg.batches, train.location_ids, xy)
    proxies = PlaceProxies(len(sampler.groups)) if cfg.batches == "similar" else None
    cells = None
    if cfg.cells:  # before the minutes of decoding: an unknown partition fails at once
        from .cell_heads import place_labels

        cells = place_labels(conn, cfg.cells, cfg.cells_partition_id, train.location_ids, sampler.groups)
        cfg.cells_partition_id = cells.partition_id
    side = cache_side(cfg.input_size)
    report("decoding", {"split": cfg.split, "images": len(train)})
    cache = decode_cache(train.files(), side)
    validator = None
    counts = {
        "train_images": len(train),
        "train_places": len(sampler.groups),
        "train_locations": int(len(np.unique(train.location_ids))),
        "skipped_places": sampler.skipped_places,
        "places_filled_with_repeats": sampler.short_places,
        "train_versions": {v: train.versions.count(v) for v in sorted(set(train.versions))},
    }
    if cells is not None:
        counts["cells_per_level"] = cells.sizes
    if cfg.val_split:
        val = load_split(conn, cfg.val_split, None, include_queries=True)
        if not val.is_query.any() or val.is_query.all():
            raise InputError(f"split '{cfg.val_split}' has no query/database images to validate on",
                             hint="import its images first, or pass --val-split none")
        report("decoding", {"split": cfg.val_split, "images": len(val)})
        vcache = decode_cache(val.files(), side)
        validator = Validator(vcache, val.location_ids, val.is_query, cfg.input_size)
        counts.update(validator.counts)
    return TrainData(train, sampler, cache, validator, counts, cells, proxies)
