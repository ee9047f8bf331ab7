"""The non-learned baseline: a 16x16 RGB thumbnail, mean-subtracted and L2-normalised.

It answers "how much does the model add?": if a thumbnail finds the place as often, the network
learned nothing useful. Its vectors are stored as the pseudo-model 'thumbnail-16' (backbone
'thumbnail', dim 768) so `geoloc embed`, `search` and `evaluate` treat it like any model: same
table, same HNSW index, same SQL.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import transaction
from ..errors import InputError
from ..model.readable import open_checked, reason_of
from ..thumbnail import SIZE, thumbnail_of

THUMBNAIL_BACKBONE = "thumbnail"
THUMBNAIL_SIZE = SIZE
THUMBNAIL_MODEL = f"thumbnail-{THUMBNAIL_SIZE}"
THUMBNAIL_DIM = THUMBNAIL_SIZE * THUMBNAIL_SIZE * 3
BASELINES = {"thumbnail": THUMBNAIL_MODEL}


def thumbnail_vector(path: Path | BinaryIO, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """float32 (size*size*3,) unit vector of one image file (or of an upload's checked bytes as a
    binary stream); InputError naming the file otherwise.

    The file and its header are checked first (geoloc.model.readable: a regular file within the size
    and pixel limits of geoloc.imagefile, in a format every model reads), then JPEG draft mode decodes
    at 1/8 scale (block averages), then geoloc.thumbnail makes the vector: box-filtered thumbnail (an
    area average, no aliasing), per-image mean removed (brightness), normalised (contrast).
    """
    with open_checked(path) as im:
        im.draft("RGB", (size, size))
        return thumbnail_of(im, size)


def _thumbnail_or_reason(path: Path, size: int) -> np.ndarray | str:
    try:
        return thumbnail_vector(path, size)
    except InputError as exc:
        return reason_of(path, exc)


def thumbnail_batches(keys: Sequence[int], paths: Sequence[Path], batch: int, skipped: list,
                      size: int = THUMBNAIL_SIZE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, (n, size*size*3) float32 unit vectors) per batch of PATHS, in order (Pillow decodes
    without the GIL). An unreadable file is appended to SKIPPED as (key, path, reason) and left out."""
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(paths), batch):
            chunk = [Path(p) for p in paths[start:start + batch]]
            out_keys, vectors = [], []
            for key, path, v in zip(keys[start:start + batch], chunk,
                                    pool.map(lambda p: _thumbnail_or_reason(p, size), chunk)):
                if isinstance(v, str):
                    skipped.append((key, path, v))
                else:
                    out_keys.append(key)
                    vectors.append(v)
            if vectors:
                yield np.asarray(out_keys, np.int64), np.stack(vectors)


def ensure_thumbnail_model(conn: Connection | None, name: str = THUMBNAIL_MODEL):
    """The pseudo-model row of the thumbnail baseline, registered on first use."""
    from ..db.models import get_model

    hyper = {"kind": "baseline", "size": THUMBNAIL_SIZE, "mean_subtracted": True, "l2": True}
    with transaction(conn) as conn:
        conn.execute(sqlfiles.text("search/thumbnail_model.sql"),
                     {"name": name, "dim": THUMBNAIL_DIM, "size": THUMBNAIL_SIZE, "hyperparams": json.dumps(hyper)})
        row = get_model(conn, name)
    if row.backbone != THUMBNAIL_BACKBONE:
        raise InputError(f"model '{name}' exists but is not the thumbnail baseline (backbone {row.backbone})")
    return row


def baseline_model_name(baseline: str) -> str:
    """'thumbnail' -> 'thumbnail-16'; InputError for an unknown baseline."""
    try:
        return BASELINES[baseline]
    except KeyError:
        raise InputError(f"--baseline '{baseline}': unknown baseline (choose one of: {', '.join(BASELINES)})") from None
