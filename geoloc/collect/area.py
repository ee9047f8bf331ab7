"""Loading an area polygon from GeoJSON: validated in Python, stored and measured in PostGIS."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.validation import explain_validity
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import transaction
from ..errors import AlreadyExists, InputError
from ..wgs84 import is_bbox


MAX_IDX = 2**31 - 1  # grid_points.idx is an int4


@dataclass
class AreaResult:
    id: int
    name: str
    parts: int
    area_m2: float
    replaced: bool = False
    points: int = 0  # grid points the area had before a replacement
    answered: int = 0  # ... of which with a metadata answer
    outside_unanswered: int = 0  # outside the new polygon, no answer: removed
    outside_answered: int = 0  # outside the new polygon, with a paid answer: kept unless delete_answers
    answers_deleted: int = 0
    spacings: list[float] = field(default_factory=list)  # grid spacings the area has

    @property
    def points_kept(self) -> int:
        return self.points - self.outside_unanswered - self.answers_deleted

    def replacement_lines(self) -> list[str]:
        """What a replacement did to the grid points and their paid answers, for the user."""
        lines = [f"grid points kept: {self.points_kept:,} of {self.points:,} "
                 f"(metadata answers kept: {self.answered - self.answers_deleted:,} of {self.answered:,})",
                 f"outside the new polygon: {self.outside_unanswered:,} point(s) without an answer removed"]
        if self.answers_deleted:
            lines.append(f"outside the new polygon: {self.answers_deleted:,} point(s) with a paid metadata answer "
                         "deleted, with their answers (--delete-answers)")
        elif self.outside_answered:
            lines.append(f"outside the new polygon: {self.outside_answered:,} point(s) with a paid metadata answer "
                         "kept (--delete-answers would delete them and their answers)")
        for spacing in self.spacings:
            lines.append(f"to cover the new polygon: geoloc ingest grid --area {self.name} --spacing {spacing:g}")
        return lines


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
    if not is_bbox(lon_min, lat_min, lon_max, lat_max):
        raise InputError(f"{path}: coordinates are not WGS84 longitude/latitude")
    merged = shapely.union_all(polygons)
    return merged if isinstance(merged, MultiPolygon) else MultiPolygon([merged])


def ingest_area(path: Path, name: str, replace: bool = False, delete_answers: bool = False,
                conn: Connection | None = None) -> AreaResult:
    """Store a polygon area under NAME, or with REPLACE give an existing area the new polygon.

    The GeoJSON is read and validated before anything is touched, and all the work is one transaction:
    a broken file or a failure stores nothing and changes nothing. A replacement keeps the area's id,
    its grid points and their paid metadata answers (see `_replace`); grid points outside the new
    polygon that have an answer are deleted only with DELETE_ANSWERS.
    """
    if delete_answers and not replace:
        raise InputError("--delete-answers only applies with --replace")
    geom = read_polygon(path)
    with transaction(conn) as c:
        return _ingest_area(c, path, geom, name, replace, delete_answers)


def _ingest_area(conn: Connection, path: Path, geom: MultiPolygon, name: str, replace: bool,
                 delete_answers: bool) -> AreaResult:
    existing = conn.execute(sqlfiles.text("area/lock.sql"), {"name": name}).scalar()
    if existing is not None and not replace:
        raise AlreadyExists(f"area '{name}' already exists",
                            hint="use --replace to give it the new polygon (its grid points and metadata "
                                 "answers are kept)")
    if existing is not None:
        return _replace(conn, existing, name, geom, str(path), delete_answers)
    row = conn.execute(
        sqlfiles.text("area/insert.sql"), {"name": name, "wkt": geom.wkt, "source": str(path)}
    ).one()
    return AreaResult(row.id, name, len(geom.geoms), row.area_m2)


def _replace(conn: Connection, area_id: int, name: str, geom: MultiPolygon, source: str,
             delete_answers: bool) -> AreaResult:
    """Swap in the new polygon (same area id) inside the caller's transaction.

    The new polygon is staged and checked first; then grid points outside it without an answer are
    removed (nothing paid is lost), those with a paid answer are kept (or deleted with
    DELETE_ANSWERS), and the kept points are re-indexed to the new polygon's grid frame so that
    `geoloc ingest grid` adds exactly the missing cells afterwards.
    """
    conn.execute(sqlfiles.text("grid/lock.sql"))  # no grid run while the points move
    conn.execute(sqlfiles.text("area/lock_answers.sql"))  # no answer arrives while points are classified
    conn.execute(sqlfiles.text("area/stage_replacement.sql"), {"wkt": geom.wkt})
    if not conn.execute(sqlfiles.text("area/staged_valid.sql")).scalar():
        raise InputError(f"{source}: PostGIS finds the polygon invalid")
    conn.execute(sqlfiles.text("area/classify_points.sql"), {"area_id": area_id})
    counts = conn.execute(sqlfiles.text("area/replacement_counts.sql")).one()
    if counts.max_idx is not None and counts.max_idx > MAX_IDX:
        raise InputError(f"{source}: the new polygon's grid frame is too large for the area's stored grid "
                         f"({counts.max_idx:,} cells, at most {MAX_IDX:,})")
    conn.execute(sqlfiles.text("area/delete_outside.sql"), {"delete_answers": delete_answers})
    conn.execute(sqlfiles.text("area/reindex_detach.sql"))
    conn.execute(sqlfiles.text("area/reindex_attach.sql"))
    row = conn.execute(sqlfiles.text("area/swap.sql"), {"area_id": area_id, "source": source}).one()
    return AreaResult(row.id, name, len(geom.geoms), row.area_m2, replaced=True, points=counts.points,
                      answered=counts.answered, outside_unanswered=counts.outside_unanswered,
                      outside_answered=counts.outside_answered,
                      answers_deleted=counts.outside_answered if delete_answers else 0, spacings=list(counts.spacings))
