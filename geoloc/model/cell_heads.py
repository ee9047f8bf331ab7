"""Cell classification heads on the embedding, trained jointly with the multi-similarity loss.

One linear head per level of a partition sits on the L2-normalised embedding: logit_c = w_c . e + b_c.
The embedder itself is unchanged (`geoloc embed`/`search` see the same model), and since the heads
are linear on the stored vectors, the registry keeps them as rows of model_cells (one weight vector
and bias per cell) and SQL computes cell probabilities from any stored or query embedding
(geoloc/sql/search/knn_cells.sql). At prediction the levels combine hierarchically, as in GeoEstimation:
a finest cell's score is the product of its own and its ancestors' probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import transaction
from ..errors import InputError, NotFound
from ..cells.partition import get_partition

HEADS_FILE = "best.cells.weights.h5"


@dataclass
class CellLabels:
    """A partition's classes and the class of each training place, per level (-1: no cell)."""

    partition_id: int
    partition: str
    cell_ids: list[list[int]]  # per level: cell id of each class index
    place_labels: np.ndarray  # (places, levels) int32

    @property
    def sizes(self) -> list[int]:
        return [len(ids) for ids in self.cell_ids]


def load_partition_classes(conn: Connection | None, name: str,
                           partition_id: int | None = None) -> tuple[int, list[list[int]]]:
    """(partition id, per level the cell ids in class-index order) of partition NAME.

    PARTITION_ID pins the partition a run started with: a rebuilt NAME is refused for it.
    """
    with transaction(conn) as conn:
        return _partition_classes(conn, name, partition_id)


def _partition_classes(conn: Connection, name: str, partition_id: int | None) -> tuple[int, list[list[int]]]:
    if partition_id is None:
        partition_id = get_partition(conn, name).id
    elif conn.execute(sqlfiles.text("cells/partition_by_id.sql"), {"partition_id": partition_id}).first() is None:
        raise NotFound(f"cell partition '{name}' (id {partition_id}) no longer exists")
    rows = conn.execute(sqlfiles.text("cells/partition_classes.sql"), {"partition_id": partition_id}).all()
    levels: dict[int, list[int]] = {}
    for r in rows:
        levels.setdefault(r.level, []).append(r.id)
    return partition_id, [levels[lv] for lv in sorted(levels)]


def place_labels(conn: Connection | None, name: str, partition_id: int | None, location_ids: np.ndarray,
                 groups: list[np.ndarray]) -> CellLabels:
    """The class of every sampler place (a group of image indices of one location) on every level."""
    with transaction(conn) as conn:
        partition_id, cell_ids = _partition_classes(conn, name, partition_id)
        rows = conn.execute(sqlfiles.text("cells/location_classes.sql"), {"partition_id": partition_id}).all()
    by_location: dict[int, dict[int, int]] = {}
    for r in rows:
        by_location.setdefault(r.location_id, {})[r.level] = r.class_index
    labels = np.full((len(groups), len(cell_ids)), -1, np.int32)
    for g, members in enumerate(groups):
        classes = by_location.get(int(location_ids[members[0]]), {})
        for level, cls in classes.items():
            labels[g, level] = cls
    if (labels < 0).all():
        raise InputError(f"no training place lies in a cell of partition '{name}'",
                         hint="build the partition from the same split: geoloc cells build NAME --replace")
    return CellLabels(partition_id, name, cell_ids, labels)


def build_heads(dim: int, sizes: list[int]):
    """A keras.Model mapping (N, dim) embeddings to one (N, classes) logits tensor per level."""
    import keras

    emb = keras.Input((dim,), name="embedding")
    outputs = [keras.layers.Dense(n, name=f"cells_level_{level}")(emb) for level, n in enumerate(sizes)]
    return keras.Model(emb, outputs, name="cell_heads")


def head_arrays(heads) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weights (classes, dim), bias (classes,)) of each level."""
    out = []
    for layer in heads.layers[1:]:
        kernel, bias = layer.get_weights()
        out.append((kernel.T.astype(np.float32), bias.astype(np.float32)))
    return out


def store_heads(conn: Connection | None, model_id: int, labels: CellLabels, heads) -> int:
    """Write the heads into model_cells (one row per cell); returns the rows written."""
    n = 0
    with transaction(conn) as conn:
        for cell_ids, (w, b) in zip(labels.cell_ids, head_arrays(heads)):
            conn.execute(sqlfiles.text("cells/insert_heads.sql"), {
                "model_id": int(model_id), "cell_id": cell_ids,
                "weight": ["[" + ",".join(f"{x:.8g}" for x in row) + "]" for row in w],
                "bias": [float(x) for x in b]})
            n += len(cell_ids)
    return n


def save_best(heads, run_dir: Path) -> None:
    import os

    tmp = run_dir / f"next.{HEADS_FILE}"
    heads.save_weights(tmp)
    os.replace(tmp, run_dir / HEADS_FILE)
