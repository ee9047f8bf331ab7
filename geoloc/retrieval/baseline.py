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
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import psycopg_connection
from ..errors import InputError

THUMBNAIL_BACKBONE = "thumbnail"
THUMBNAIL_SIZE = 16
THUMBNAIL_MODEL = f"thumbnail-{THUMBNAIL_SIZE}"
THUMBNAIL_DIM = THUMBNAIL_SIZE * THUMBNAIL_SIZE * 3
BASELINES = {"thumbnail": THUMBNAIL_MODEL}


def thumbnail_vector(path: Path, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """float32 (size*size*3,) unit vector of one image file; InputError naming the file otherwise.

    JPEG draft mode decodes at 1/8 scale (block averages), then a box filter makes the thumbnail: an
    area average, no aliasing. The per-image mean is removed (brightness), then the vector is
    normalised (contrast). A flat image becomes the constant unit vector, orthogonal to every
    mean-subtracted one, instead of an undefined 0/0.
    """
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))
            pixels = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BOX), np.float32)
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image (unrecognised file format)") from None
    except (OSError, SyntaxError, ValueError):
        raise InputError(f"{path}: corrupt or truncated image") from None
    v = pixels.reshape(-1)
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    if norm < 1e-6:
        return np.full(v.shape, 1.0 / np.sqrt(v.size), np.float32)
    return (v / norm).astype(np.float32)


def thumbnail_batches(paths: Sequence[Path], batch: int, size: int = THUMBNAIL_SIZE) -> Iterator[np.ndarray]:
    """(n, size*size*3) float32 unit vectors per batch of PATHS, in order (Pillow decodes without the GIL)."""
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(paths), batch):
            chunk = paths[start:start + batch]
            yield np.stack(list(pool.map(lambda p: thumbnail_vector(Path(p), size), chunk)))


def ensure_thumbnail_model(conn: Connection, name: str = THUMBNAIL_MODEL):
    """The pseudo-model row of the thumbnail baseline, registered on first use."""
    from ..model.registry import get_model

    hyper = {"kind": "baseline", "size": THUMBNAIL_SIZE, "mean_subtracted": True, "l2": True}
    with psycopg_connection(conn).cursor() as cur:
        cur.execute(sqlfiles.read("search/thumbnail_model.sql"),
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
