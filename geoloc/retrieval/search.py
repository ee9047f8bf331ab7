"""`geoloc search`: embed photos and find where they were taken with one SQL query each.

The query (sql/search/knn.sql) joins images and locations and applies the optional region filter in
the same statement, choosing its plan per query by the region's size: a region with at most
SMALL_REGION locations is read through the GiST index on locations and ranked exactly; no region or
a larger one orders by the model's HNSW index expression, and pgvector 0.8's iterative index scan
keeps walking the graph until k rows pass the filter.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from psycopg import sql
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import begin, psycopg_connection
from ..errors import InputError, NotFound
from .consensus import Consensus, consensus
from .index import VectorType, indexed_type, vector_type
from .vectors import vector_cursor

DEFAULT_K = 5
MAX_K = 1000
DEFAULT_EF_SEARCH = 100
MAX_SCAN_TUPLES = 20000  # pgvector's default: how far an iterative scan may walk before it gives up
# regions whose bounding box holds at most this many locations are ranked exactly (GiST plan), larger
# ones through the HNSW iterative scan: where the two plans' latencies cross at 100k x 256 (about
# 1,000-1,300 locations in the circle, benchmarks/README.md "Scale")
SMALL_REGION = 1500
# Every join of knn.sql is an index lookup of a few rows: nested loops only. Without these the planner
# joined a filtered HNSW scan to a materialised (hash/merge) list of the region's images, 20x slower
# than following each graph row to its image and location by primary key (benchmarks/README.md).
JOIN_SETTINGS = ("SET LOCAL enable_hashjoin = off", "SET LOCAL enable_mergejoin = off",
                 "SET LOCAL enable_material = off", "SET LOCAL max_parallel_workers_per_gather = 0")
_NEAR = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")
NEAR_EXAMPLE = "59.3251,18.0711"


@dataclass(frozen=True)
class Region:
    """Where the database images must lie: within a radius of a point, or inside a named area."""

    lat: float | None = None
    lng: float | None = None
    within_m: float | None = None
    area: str | None = None

    @property
    def empty(self) -> bool:
        return self.within_m is None and self.area is None

    def params(self, small_region: int | None = None) -> dict:
        """knn.sql's region parameters (SMALL_REGION: the plan threshold, default SMALL_REGION)."""
        return {"lat": self.lat, "lng": self.lng, "within_m": self.within_m, "area": self.area,
                "small_region": int(SMALL_REGION if small_region is None else small_region)}


@dataclass
class Neighbour:
    rank: int
    image_id: int
    location_id: int
    heading: int
    capture_month: date | None
    distance: float
    file: Path
    split: str | None
    version: str | None
    lat: float
    lng: float

    def to_json(self) -> dict:
        d = asdict(self)
        d["file"] = str(self.file)
        d["capture_month"] = self.capture_month.strftime("%Y-%m") if self.capture_month else None
        return d


@dataclass
class QueryResult:
    image: Path
    neighbours: list[Neighbour]
    best: Neighbour | None
    consensus: Consensus | None
    region: Region = field(default_factory=Region)

    def to_json(self) -> dict:
        best = None if self.best is None else {
            "location_id": self.best.location_id, "lat": self.best.lat, "lng": self.best.lng,
            "distance": self.best.distance}
        return {"image": str(self.image), "best": best,
                "consensus": None if self.consensus is None else asdict(self.consensus),
                "neighbours": [n.to_json() for n in self.neighbours]}


def parse_near(value: str) -> tuple[float, float]:
    """'LAT,LNG' in degrees; InputError naming the option otherwise."""
    m = _NEAR.match(value or "")
    lat, lng = (float(m.group(1)), float(m.group(2))) if m else (None, None)
    if lat is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise InputError(f"--near '{value}': expected LAT,LNG in degrees, e.g. {NEAR_EXAMPLE}")
    return lat, lng


def make_region(near: str | tuple[float, float] | None = None, within_m: float | None = None,
                area: str | None = None) -> Region:
    """Check the region options together: --near needs --within, and --area excludes both."""
    if area is not None and (near is not None or within_m is not None):
        raise InputError("--area cannot be combined with --near/--within: choose one region")
    if (near is None) != (within_m is None):
        raise InputError("--near and --within go together: give both, e.g. --near 59.3251,18.0711 --within 500")
    if near is None:
        return Region(area=area)
    lat, lng = parse_near(near) if isinstance(near, str) else near
    if not within_m > 0:
        raise InputError(f"--within {within_m:g}: must be a positive number of metres")
    return Region(lat, lng, float(within_m), None)


def check_query_image(path: Path) -> Path:
    """Fail early, naming the photo, on anything that is not a readable image within geoloc.imagefile's
    limits (missing, a folder, a FIFO or link, too many bytes or pixels, not an image, truncated)."""
    from ..imagefile import open_image
    from ..model.readable import check_image_header

    path = check_image_header(Path(path))  # header only: a decompression bomb is refused undecoded
    open_image(path).close()  # every pixel decodes
    return path


def require_embeddings(conn: Connection, model_name: str, model_id: int) -> None:
    with psycopg_connection(conn).cursor() as cur:
        cur.execute(sqlfiles.read("search/has_embeddings.sql"), {"model_id": model_id})
        if not cur.fetchone()[0]:
            raise NotFound(f"model '{model_name}' has no embeddings",
                           hint=f"run 'geoloc embed --model {model_name}' first")


def require_area(conn: Connection, area: str | None) -> None:
    if area is None:
        return
    with psycopg_connection(conn).cursor() as cur:
        cur.execute(sqlfiles.read("search/area_exists.sql"), {"area": area})
        if not cur.fetchone()[0]:
            raise NotFound(f"area '{area}' not found", hint="load it with 'geoloc ingest area FILE --name NAME'")


def knn_statement(dim: int, vtype: VectorType | None = None) -> sql.Composed:
    """sql/search/knn.sql with the type of the model's index (VTYPE, default vector_type(DIM))
    composed in (it cannot be bound)."""
    return sql.SQL(sqlfiles.read("search/knn.sql")).format(vtype=(vtype or vector_type(dim)).sql())


def search_type(conn: Connection, model_id: int, dim: int) -> VectorType:
    """The type the query must cast to: that of the model's index, or the default without one."""
    return indexed_type(conn, model_id, dim) or vector_type(dim)


def set_search_options(conn: Connection, ef_search: int = DEFAULT_EF_SEARCH,
                       max_scan_tuples: int = MAX_SCAN_TUPLES) -> None:
    """Transaction-local planner/index settings the knn query relies on (see sql/search/knn.sql)."""
    with psycopg_connection(conn).cursor() as cur:
        cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(int(ef_search))))
        cur.execute(sql.SQL("SET LOCAL hnsw.max_scan_tuples = {}").format(sql.Literal(int(max_scan_tuples))))
        cur.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        for setting in JOIN_SETTINGS:
            cur.execute(setting)


def knn_params(model_id: int, query: np.ndarray, k: int, region: Region, split: str | None,
               version: str | None, small_region: int | None = None) -> dict:
    return {"query": np.asarray(query, np.float32), "model_id": int(model_id), "k": int(k),
            "split": split, "version": version, **region.params(small_region)}


def knn(conn: Connection, model_id: int, dim: int, query: np.ndarray, k: int = DEFAULT_K,
        region: Region = Region(), split: str | None = None, version: str | None = None,
        vtype: VectorType | None = None) -> list[Neighbour]:
    """The k nearest images to one embedding (call set_search_options first in the transaction).
    VTYPE: the type of the model's index (search_type), looked up when not given."""
    vtype = vtype or search_type(conn, model_id, dim)
    with vector_cursor(conn) as cur:
        cur.execute(knn_statement(dim, vtype), knn_params(model_id, query, k, region, split, version))
        rows = cur.fetchall()
    return [Neighbour(r[0], r[1], r[2], r[3], r[4], float(r[5]), Path(r[6]) / r[7], r[8], r[9], r[10], r[11])
            for r in rows]


def explain(conn: Connection, model_id: int, dim: int, query: np.ndarray, k: int = DEFAULT_K,
            region: Region = Region(), vtype: VectorType | None = None, small_region: int | None = None) -> str:
    """Which plan knn's statement ran for this query: 'hnsw' (the model's HNSW index), 'gist+exact'
    (the region's locations through the GiST index, ranked exactly) or 'seq' (neither: no index)."""
    vtype = vtype or search_type(conn, model_id, dim)
    with vector_cursor(conn) as cur:
        cur.execute(b"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + knn_statement(dim, vtype).as_bytes(cur),
                    knn_params(model_id, query, k, region, None, None, small_region))
        lines = [r[0] for r in cur.fetchall()]
    return plan_of(lines)


def plan_of(lines: list[str]) -> str:
    """Name the plan of EXPLAIN ANALYZE lines of knn's statement by the scans that actually ran."""
    ran = [ln for ln in lines if "never executed" not in ln]
    if any("embeddings_hnsw_" in ln for ln in ran):
        return "hnsw"
    if any("Index Scan" in ln and "locations" in ln and "geom" in ln for ln in ran) or \
            any("idx_locations_geom" in ln for ln in ran):
        return "gist+exact"
    return "seq"


def prepare_search(images: Sequence[Path], model: str, k: int, near, within_m: float | None, area: str | None,
                   url: str | None, check: Callable | None = None):
    """(embedder, region, photo paths) after every check a search makes before embedding anything:
    photos given and readable, k in range, the region, the model with embeddings, the area; CHECK(conn,
    embedder) adds a caller's own test inside the same transaction."""
    from .embed import load_embedder

    if not images:
        raise InputError("no image given: name at least one photo to search for")
    if not 1 <= k <= MAX_K:
        raise InputError(f"-k {k}: must be between 1 and {MAX_K}")
    region = make_region(near, within_m, area)
    paths = [check_query_image(Path(p)) for p in images]
    with begin(url) as conn:
        emb = load_embedder(conn, model)
        require_embeddings(conn, emb.name, emb.model_id)
        require_area(conn, region.area)
        if check is not None:
            check(conn, emb)
    return emb, region, paths


def search(images: Sequence[Path], model: str, k: int = DEFAULT_K, near: str | tuple[float, float] | None = None,
           within_m: float | None = None, area: str | None = None, split: str | None = None,
           version: str | None = None, ef_search: int = DEFAULT_EF_SEARCH, url: str | None = None,
           read_url: str | None = None) -> list[QueryResult]:
    """Where were IMAGES taken? The k nearest database images for each, its best match and a consensus.

    Every query of a search only reads: READ_URL (else URL, else GEOLOC_READ_DATABASE_URL, else the
    configured database) may be a streaming replica (`geoloc db replica`)."""
    from .. import config

    url = config.normalise_url(read_url, "--read-url") if read_url else url or config.read_database_url()
    emb, region, paths = prepare_search(images, model, k, near, within_m, area, url)
    vectors = emb.embed(paths)
    results = []
    with begin(url) as conn:
        set_search_options(conn, max(ef_search, k))
        vtype = search_type(conn, emb.model_id, emb.dim)
        for path, v in zip(paths, vectors):
            neighbours = knn(conn, emb.model_id, emb.dim, v, k, region, split, version, vtype)
            results.append(QueryResult(path, neighbours, neighbours[0] if neighbours else None,
                                       consensus(neighbours), region))
    return results
