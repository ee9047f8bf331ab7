"""The buffer selection of the original project, in SQL: greedy, nearest-to-origin first.

Coexistence with the CSV import: a buffer that already has CSV-imported locations is only
*compared* (kept / equal / Jaccard), never written, because those locations carry the ids of the
existing images and a second set in the same buffer would put the same places in a split twice.
Buffers without CSV locations get their kept locations stored with source 'selection', ids after
the largest id in use, in selection order. Re-running with the same input changes nothing; when
the result differs from an earlier selection, ``replace`` deletes that selection first (refused
when its locations already have images or capture jobs). CSV locations are never touched.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import transaction
from ..errors import AlreadyExists, InputError
from ..splits import SPLITS
from ..wgs84 import is_latlng
from .locations import DEFAULT_SPLITS

ORIGIN = (59.32493573672165, 18.069355309000265)  # Gamla Stan, as the original
DEFAULT_METERS = (100.0, 75.0, 60.0, 50.0, 45.0, 35.0)


@dataclass
class BufferOutcome:
    buffer_m: float
    kept: int
    split: str | None
    stored: int = 0  # new rows written by this run
    action: str = ""  # 'stored', 'unchanged', 'replaced', 'compared with CSV'
    csv: int = 0  # CSV-imported locations of this buffer
    csv_equal: int = 0  # of them, kept by this selection too (same panorama)
    csv_same_order: int = 0  # of those, at the same order number

    @property
    def jaccard(self) -> float | None:
        union = self.kept + self.csv - self.csv_equal
        return self.csv_equal / union if self.csv and union else None


@dataclass
class BuffersResult:
    origin: tuple[float, float]
    quad_segs: int = 0
    candidates: int = 0
    buffers: list[BufferOutcome] = field(default_factory=list)
    select_seconds: float = 0.0
    seconds: float = 0.0


def parse_origin(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        lat, lng = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"--origin '{text}': expected LAT,LNG, e.g. 59.3249,18.0694") from None
    if not is_latlng(lat, lng):
        raise InputError(f"--origin '{text}': not a WGS84 latitude,longitude")
    return lat, lng


def _check_meters(meters) -> list[float]:
    result = [float(m) for m in meters]
    if not result:
        raise InputError("--meters: give at least one buffer distance")
    bad = [m for m in result if not m > 0]
    if bad:
        raise InputError(f"--meters {bad[0]:g}: buffer distances must be positive metres")
    if len(set(result)) != len(result):
        raise InputError("--meters: each buffer distance may be given once")
    return result


def ingest_buffers(origin: tuple[float, float] = ORIGIN, meters=DEFAULT_METERS,
                   splits: dict[float, str | None] | None = None, replace: bool = False,
                   quad_segs: int = 0, conn: Connection | None = None) -> BuffersResult:
    """Select the buffer sets over all panoramas and store (or compare) them, in one transaction.

    quad_segs 0 tests exact circles; 16 tests shapely's default buffer polygon like the original
    (reproduces the CSVs exactly, but allows pairs up to 0.12 % closer than the buffer).
    """
    meters = _check_meters(meters)
    if not 0 <= quad_segs <= 1000:
        raise InputError(f"--quad-segs {quad_segs}: must be 0 (exact circle) to 1000")
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    for m, s in splits.items():
        if s is not None and s not in SPLITS:
            raise InputError(f"split for buffer {m:g} m: '{s}' is not one of {', '.join(SPLITS)}")
    with transaction(conn) as c:
        return _ingest_buffers(c, origin, meters, splits, replace, quad_segs)


def _ingest_buffers(conn: Connection, origin: tuple[float, float], meters: list[float],
                    splits: dict[float, str | None], replace: bool, quad_segs: int) -> BuffersResult:
    start = time.perf_counter()
    result = BuffersResult(origin=tuple(origin), quad_segs=quad_segs)
    conn.execute(sqlfiles.text("buffers/select_function.sql"))
    conn.execute(sqlfiles.text("buffers/create_selection.sql"),
                 {"lat": origin[0], "lng": origin[1], "buffers": meters, "quad_segs": quad_segs})
    result.select_seconds = time.perf_counter() - start
    result.candidates = conn.execute(sqlfiles.text("buffers/count_candidates.sql")).scalar()
    conn.execute(sqlfiles.text("buffers/cleanup.sql"))

    to_write, to_replace = [], []
    for row in conn.execute(sqlfiles.text("buffers/compare.sql")).all():
        out = BufferOutcome(row.buffer_m, row.kept, splits.get(row.buffer_m), csv=row.csv, csv_equal=row.csv_equal,
                            csv_same_order=row.csv_same_order)
        result.buffers.append(out)
        if row.csv:
            out.action = "compared with CSV"
        elif row.selected_before == 0:
            out.action = "stored"
            to_write.append(out)
        elif row.selected_before == row.kept == row.selected_equal:
            out.action = "unchanged"
        elif replace:
            out.action = "replaced"
            to_replace.append(out)
            to_write.append(out)
        else:
            raise AlreadyExists(
                f"buffer {row.buffer_m:g} m: an earlier selection stored {row.selected_before} locations, "
                f"this one keeps {row.kept} ({row.selected_equal} the same)",
                hint="use --replace to delete the earlier selection of these buffers and store the new one")
    if to_replace:
        gone = [m.buffer_m for m in to_replace]
        busy = conn.execute(sqlfiles.text("buffers/images_of_selected.sql"), {"buffers": gone}).first()
        if busy is not None:
            raise InputError(f"buffer {busy.buffer_m:g} m: {busy.locations} selected locations already have "
                             "images or capture jobs; not replacing them")
        conn.execute(sqlfiles.text("buffers/delete_selected.sql"), {"buffers": gone})
    if to_write:
        stored = conn.execute(sqlfiles.text("buffers/insert_selected.sql"), {
            "buffers": [m.buffer_m for m in to_write],
            "splits": json.dumps({_key(m): s for m, s in splits.items()})}).rowcount
        for out in to_write:
            out.stored = out.kept
        assert stored == sum(o.kept for o in to_write)
    result.seconds = time.perf_counter() - start
    return result


def _key(metres: float) -> str:
    """How PostgreSQL prints a double precision buffer (100 -> '100', 12.5 -> '12.5')."""
    return f"{metres:g}" if metres != int(metres) else str(int(metres))
