"""Importing the original buffer CSVs, so the location ids used in image file names line up.

Each CSV row is a selected location (id = ``new_order_idx``) with the real metadata answer of its
grid point; its panorama is stored once in ``panoramas``. The rows are parsed and checked in Python
(errors name file and line), COPYed into a staging table and merged with ON CONFLICT in one
transaction, so a bad file stores nothing and a re-import adds nothing.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import psycopg_connection, transaction
from ..errors import InputError
from ..months import parse_iso_month
from ..splits import SPLITS
from ..wgs84 import is_latlng

# As the original project: 100 m -> Training, 75 m -> Test v1, 60 m -> Test v2, 50 m -> Validation v2,
# 35 m -> Validation v1; 45 m was selected but never scraped (no split).
DEFAULT_SPLITS: dict[float, str | None] = {100.0: "train", 75.0: "test", 60.0: "test", 50.0: "val",
                                           45.0: None, 35.0: "val"}
FILE_PATTERN = re.compile(r"^new_order_buffer_(\d+(?:\.\d+)?)\.csv$")
REQUIRED_COLUMNS = ("new_order_idx", "Location_idx", "Location", "Copyright", "Date", "Latitude",
                    "Longitude", "PanoID", "dist_to_start_point")
STAGING_COLUMNS = ("id", "pano_id", "lat", "lng", "capture_month", "copyright", "grid_idx", "grid_lat",
                   "grid_lng", "buffer_m", "order_no", "dist_to_origin_m", "split")


@dataclass
class LocationsImport:
    files: int = 0
    rows: int = 0
    panoramas_added: int = 0
    locations_added: int = 0
    splits_changed: int = 0
    per_buffer: dict[float, int] = field(default_factory=dict)  # rows per buffer
    splits: dict[float, str | None] = field(default_factory=dict)  # the map that was applied


def parse_split(value: str) -> tuple[float, str | None]:
    """'100=train' -> (100.0, 'train'); 'none' as split leaves that buffer without one."""
    buffer, sep, split = value.partition("=")
    split = split.strip().lower()
    try:
        metres = float(buffer)
    except ValueError:
        metres = -1.0
    if not sep or metres <= 0:
        raise InputError(f"--split '{value}': expected BUFFER_M=SPLIT, e.g. 100=train")
    if split in ("none", "null", ""):
        return metres, None
    if split not in SPLITS:
        raise InputError(f"--split '{value}': split must be one of {', '.join(SPLITS)} or none")
    return metres, split


def split_map(overrides: list[str] | tuple[str, ...] = ()) -> dict[float, str | None]:
    """The default buffer -> split map with ``--split`` options applied on top."""
    result = dict(DEFAULT_SPLITS)
    result.update(parse_split(v) for v in overrides)
    return result


def buffer_of(path: Path) -> float:
    match = FILE_PATTERN.match(Path(path).name)
    if not match:
        raise InputError(f"{path}: file name must be new_order_buffer_<metres>.csv (the buffer comes from it)")
    return float(match.group(1))


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for its new_order_buffer_*.csv files."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("new_order_buffer_*.csv"), key=buffer_of, reverse=True)
            if not found:
                raise InputError(f"{p}: folder contains no new_order_buffer_<metres>.csv file")
            files.extend(found)
        elif not p.exists():
            raise InputError(f"{p}: file not found")
        else:
            files.append(p)
    return files


def _number(path: Path, line: int, column: str, raw: str, kind=float):
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise InputError(f"{path}, line {line}: column '{column}': '{raw}' is not a number") from None


def _latlng(path: Path, line: int, column: str, raw: str) -> tuple[float, float]:
    parts = (raw or "").split(",")
    if len(parts) != 2:
        raise InputError(f"{path}, line {line}: column '{column}': '{raw}' is not 'lat, lng'")
    lat, lng = (_number(path, line, column, p.strip()) for p in parts)
    _check_wgs84(path, line, column, lat, lng)
    return lat, lng


def _check_wgs84(path: Path, line: int, column: str, lat: float, lng: float) -> None:
    if not is_latlng(lat, lng):
        raise InputError(f"{path}, line {line}: column '{column}': {lat}, {lng} is not a WGS84 latitude/longitude")


def _month(path: Path, line: int, raw: str) -> date | None:
    if not raw:
        return None
    month = parse_iso_month(raw)
    if month is None:
        raise InputError(f"{path}, line {line}: column 'Date': '{raw}' is not YYYY-MM")
    return month


def read_buffer_csv(path: Path, split: str | None) -> list[tuple]:
    """The rows of one buffer CSV as staging tuples (see STAGING_COLUMNS)."""
    buffer = buffer_of(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    rows = []
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
            for order_no, rec in enumerate(reader):
                line = reader.line_num
                if None in rec or any(rec[c] is None for c in REQUIRED_COLUMNS):
                    raise InputError(f"{path}, line {line}: wrong number of fields")
                lat = _number(path, line, "Latitude", rec["Latitude"])
                lng = _number(path, line, "Longitude", rec["Longitude"])
                _check_wgs84(path, line, "Latitude/Longitude", lat, lng)
                grid_lat, grid_lng = _latlng(path, line, "Location", rec["Location"])
                pano_id = rec["PanoID"].strip()
                if not pano_id:
                    raise InputError(f"{path}, line {line}: column 'PanoID' is empty")
                rows.append((
                    _number(path, line, "new_order_idx", rec["new_order_idx"], int),
                    pano_id, lat, lng,
                    _month(path, line, rec["Date"]),
                    rec["Copyright"] or None,
                    _number(path, line, "Location_idx", rec["Location_idx"], int),
                    grid_lat, grid_lng, buffer, order_no,
                    _number(path, line, "dist_to_start_point", rec["dist_to_start_point"]),
                    split,
                ))
        except csv.Error as exc:
            raise InputError(f"{path}, line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
    return rows


def ingest_locations(paths: list[Path], splits: dict[float, str | None] | None = None,
                     conn: Connection | None = None) -> LocationsImport:
    """Import buffer CSVs (or folders of them) as locations + panoramas, in one transaction.

    ``splits`` maps buffer metres to a split (None = DEFAULT_SPLITS); buffers not in it get no split.
    """
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    for metres, split in splits.items():
        if split is not None and split not in SPLITS:
            raise InputError(f"split for buffer {metres:g} m: '{split}' is not one of {', '.join(SPLITS)}")
    files = expand(paths)
    if not files:
        raise InputError("no buffer CSV given")
    summary = LocationsImport(files=len(files), splits=splits)
    rows: list[tuple] = []
    seen: dict[int, Path] = {}
    for path in files:
        file_rows = read_buffer_csv(path, splits.get(buffer_of(path)))
        for r in file_rows:
            if r[0] in seen:
                raise InputError(f"{path}: location id {r[0]} (new_order_idx) also appears in {seen[r[0]]}")
            seen[r[0]] = path
        summary.per_buffer[buffer_of(path)] = summary.per_buffer.get(buffer_of(path), 0) + len(file_rows)
        rows.extend(file_rows)
    summary.rows = len(rows)
    with transaction(conn) as c:
        return _store(c, rows, summary)


def _store(conn: Connection, rows: list[tuple], summary: LocationsImport) -> LocationsImport:
    conn.execute(sqlfiles.text("locations/create_staging.sql"))
    with psycopg_connection(conn).cursor() as cur:
        with cur.copy(f"COPY csv_locations ({', '.join(STAGING_COLUMNS)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
    clash = conn.execute(sqlfiles.text("locations/conflicts.sql")).first()
    if clash is not None:
        raise InputError(
            f"location id {clash.id} is already stored for panorama {clash.stored_pano_id} "
            f"(source {clash.source}), the CSV has {clash.csv_pano_id}",
            hint="ids of CSV locations must not be reused; delete the clashing locations first")
    summary.panoramas_added = conn.execute(sqlfiles.text("locations/insert_panoramas.sql")).rowcount
    outcome = Counter(conn.execute(sqlfiles.text("locations/upsert.sql")).scalars())
    summary.locations_added = outcome[True]
    summary.splits_changed = outcome[False]
    return summary
