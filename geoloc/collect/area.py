"""Loading an area polygon from GeoJSON: validated in Python, stored and measured in PostGIS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.validation import explain_validity
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import begin
from ..errors import AlreadyExists, InputError


@dataclass
class AreaResult:
    id: int
    name: str
    parts: int
    area_m2: float


def read_polygon(path: Path) -> MultiPolygon:
    """The union of all (multi)polygons in a GeoJSON file; InputError naming the file otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "type" not in doc:
        raise InputError(f"{path}: not a GeoJSON object (no 'type')")
    if doc["type"] == "FeatureCollection":
        geoms = [f.get("geometry") for f in doc.get("features") or []]
    elif doc["type"] == "Feature":
        geoms = [doc.get("geometry")]
    else:
        geoms = [doc]
    polygons: list[Polygon] = []
    for i, g in enumerate(geoms):
        if not g:
            continue
        try:
            geom = shape(g)
        except Exception as exc:  # shapely raises several types for malformed coordinates
            raise InputError(f"{path}: geometry {i} is malformed ({exc})") from None
        if isinstance(geom, Polygon):
            polygons.append(geom)
        elif isinstance(geom, MultiPolygon):
            polygons.extend(geom.geoms)
        else:
            raise InputError(f"{path}: geometry {i} is a {geom.geom_type}, expected Polygon or MultiPolygon")
    polygons = [p for p in polygons if not p.is_empty]
    if not polygons:
        raise InputError(f"{path}: contains no polygon")
    for i, p in enumerate(polygons):
        if not p.is_valid:
            raise InputError(f"{path}: polygon {i} is invalid ({explain_validity(p)})")
    lon_min, lat_min, lon_max, lat_max = shapely.bounds(MultiPolygon(polygons))
    if not (-180 <= lon_min <= lon_max <= 180 and -90 <= lat_min <= lat_max <= 90):
        raise InputError(f"{path}: coordinates are not WGS84 longitude/latitude")
    merged = shapely.union_all(polygons)
    return merged if isinstance(merged, MultiPolygon) else MultiPolygon([merged])


def ingest_area(path: Path, name: str, replace: bool = False, conn: Connection | None = None) -> AreaResult:
    """Store a polygon area under NAME (one transaction: all or nothing)."""
    geom = read_polygon(path)
    if conn is None:
        with begin() as c:
            return ingest_area(path, name, replace, c)
    existing = conn.execute(sqlfiles.text("area/exists.sql"), {"name": name}).scalar()
    if existing is not None and not replace:
        raise AlreadyExists(f"area '{name}' already exists", hint="use --replace to overwrite it (its grid is deleted too)")
    if existing is not None:
        conn.execute(sqlfiles.text("area/delete.sql"), {"name": name})
    row = conn.execute(
        sqlfiles.text("area/insert.sql"), {"name": name, "wkt": geom.wkt, "source": str(path)}
    ).one()
    return AreaResult(row.id, name, len(geom.geoms), row.area_m2)
