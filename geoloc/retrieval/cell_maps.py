"""The top geo-cells of a hybrid search with their polygons, for the maps (`geoloc serve`, `--map`).

The polygons come from PostGIS as GeoJSON (geoloc/sql/cells/cell_polygons.sql). Each cell becomes the JSON of
geoloc.retrieval.hybrid.CellProbability plus `geometry` (a GeoJSON MultiPolygon) and `images` (the
cell's training images).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Sequence

from ..db import sqlfiles


def cell_polygons(conn, cell_ids: Sequence[int]) -> dict[int, dict]:
    """cell id -> {'geometry': GeoJSON dict, 'images': int} for CELL_IDS (unknown ids are absent)."""
    ids = sorted({int(c) for c in cell_ids})
    if not ids:
        return {}
    rows = conn.execute(sqlfiles.text("cells/cell_polygons.sql"), {"cell_ids": ids}).all()
    return {r.cell_id: {"geometry": json.loads(r.geometry), "images": r.images} for r in rows}


def cells_with_polygons(conn, cells: Sequence) -> list[dict]:
    """CELLS (CellProbability, best first) as JSON dicts, each with its polygon."""
    shapes = cell_polygons(conn, [c.cell_id for c in cells])
    return [{**asdict(c), **shapes.get(c.cell_id, {"geometry": None, "images": None})} for c in cells]

