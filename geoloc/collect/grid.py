"""The regular grid of candidate points over an area, generated inside PostGIS.

Spacing is in true metres (EPSG:3006). A point's idx is its row-major cell number in the area's
bounding box, so the same area and spacing always give the same idx for the same place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import transaction
from ..errors import InputError, NotFound

MAX_CELLS = 2**31 - 1  # idx is an int4
DEFAULT_SPACING = 10.0  # metres between grid points
BULK_MIN = 50_000  # new points from which indexes and the foreign key are rebuilt, not updated per row


@dataclass
class GridResult:
    area: str
    spacing_m: float
    added: int
    total: int
    seconds: float


def area_id(conn: Connection, area: str) -> int:
    found = conn.execute(sqlfiles.text("area/exists.sql"), {"name": area}).scalar()
    if found is None:
        raise NotFound(f"area '{area}' does not exist",
                       hint=f"load it first: geoloc ingest area FILE.geojson --name {area}")
    return found


def ingest_grid(area: str, spacing: float = DEFAULT_SPACING, conn: Connection | None = None) -> GridResult:
    """Add the grid points of AREA at SPACING metres that are not stored yet (one transaction)."""
    if not spacing > 0:
        raise InputError(f"--spacing {spacing:g}: must be a positive number of metres")
    with transaction(conn) as c:
        return _ingest_grid(c, area, spacing)


def _ingest_grid(conn: Connection, area: str, spacing: float) -> GridResult:
    start = time.perf_counter()
    aid = area_id(conn, area)
    frame = conn.execute(sqlfiles.text("grid/frame.sql"), {"area": area, "spacing": float(spacing)}).one()
    if frame.ncols * frame.nrows > MAX_CELLS:
        raise InputError(f"--spacing {spacing:g}: a grid of {frame.ncols} x {frame.nrows} cells over area "
                         f"'{area}' is too large (at most {MAX_CELLS:,} cells)")
    params = {"area_id": aid, "spacing": float(spacing), "xmin": frame.xmin, "ymax": frame.ymax,
              "ncols": int(frame.ncols)}
    conn.execute(sqlfiles.text("grid/lock.sql"))
    # the planner overestimates the generate_series joins and would spend seconds JIT-compiling
    conn.execute(sa.text("SET LOCAL jit = off"))
    new = conn.execute(sqlfiles.text("grid/stage.sql"), params).rowcount
    restore = []
    if new >= BULK_MIN and new >= conn.execute(sqlfiles.text("grid/estimate.sql")).scalar():
        # a bulk load: drop the GiST index and the foreign key, restore them after the insert
        # (exclusive lock on grid_points until commit, a few seconds)
        restore = conn.execute(sqlfiles.text("grid/bulk_load_objects.sql")).all()
        for obj in restore:
            if obj.kind == "index":
                conn.execute(sa.text(f'DROP INDEX "{obj.name}"'))
            else:
                conn.execute(sa.text(f'ALTER TABLE grid_points DROP CONSTRAINT "{obj.name}"'))
    added = conn.execute(sqlfiles.text("grid/insert.sql"), params).rowcount
    for obj in restore:
        if obj.kind == "index":
            conn.execute(sa.text(obj.definition))
        else:
            conn.execute(sa.text(f'ALTER TABLE grid_points ADD CONSTRAINT "{obj.name}" {obj.definition}'))
    total = conn.execute(sqlfiles.text("grid/count.sql"), params).scalar()
    return GridResult(area, float(spacing), added, total, time.perf_counter() - start)
