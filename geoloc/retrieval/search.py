"""`geoloc search`: embed photos and find where they were taken with one SQL query each.

The query (geoloc/sql/search/knn.sql) applies the optional region filter and joins images and
locations for the k rows it returns, choosing its plan per query by the region's size: a region whose
bounding box holds at most `small_region` of the model's embeddings (estimated from the statistics of
embeddings.geom) is read through the GiST index on embeddings (model_id, geom) and ranked exactly;
no region or a larger one orders by the model's HNSW index expression, and pgvector 0.8's iterative
index scan keeps walking the graph until k rows pass the filter. The threshold grows with the square
root of the model's size (region_plan).
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import begin, transaction
from ..errors import InputError, NotFound
from ..imagefile import image_file
from ..months import iso_month
from ..wgs84 import is_latlng
from .consensus import Consensus, consensus
from .index import IndexState, VectorType, read_index, vector_type
from .rerank import RerankParams, Verifier, check_params as check_rerank, fetch_count, rerank_candidates
from .vectors import bind_vectors, vector_param

DEFAULT_K = 5
MAX_K = 1000
DEFAULT_EF_SEARCH = 100
MAX_SCAN_TUPLES = 20000  # pgvector's default: how far an iterative scan may walk before it gives up
# Regions whose bounding box holds at most region_threshold(rows) = max(SMALL_REGION_MIN,
# SMALL_REGION_PER_SQRT * sqrt(rows)) of a model's ROWS embeddings are ranked exactly (GiST plan), larger
# ones through the HNSW iterative scan. The exact ranking costs a fixed time per row of the box (about
# 1.3 us at 1M in location order, 3 us at 100k); the graph walk takes about k / (the region's share of
# the rows) steps, so the two cross where the box holds a number of rows proportional to sqrt(rows):
# measured at about 12,700 of 1M and 3,300 of 100k (benchmarks/README.md, Scale, "Current statement").
SMALL_REGION_MIN = 500
SMALL_REGION_PER_SQRT = 11
UNLIMITED_REGION = 2**31 - 2  # knn.sql adds 1 to it as an integer
# the GiST index on embeddings (model_id, geom) that the exact plan of a small region reads
GEO_INDEX = "ix_embeddings_model_geom"
# what EXPLAIN reports on knn's statement: the plan only, or the plan as it ran (never-executed branches)
EXPLAIN_PLAN = "EXPLAIN (COSTS OFF) "
EXPLAIN_ANALYZE = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "
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

    def params(self) -> dict:
        """The region's parameters of knn.sql and knn_cells.sql."""
        return {"lat": self.lat, "lng": self.lng, "within_m": self.within_m, "area": self.area}


@dataclass(frozen=True)
class RegionPlan:
    """Where knn.sql switches from the exact ranking of a region to the graph walk: SMALL_REGION, the
    most of the model's embeddings a region's bounding box may hold to be ranked exactly, and
    MODEL_ROWS, the model's embeddings, which the box's share of the table (estimated from the
    statistics of embeddings.geom) is multiplied by. Without MODEL_ROWS, or without statistics, the
    box's rows are counted instead, up to SMALL_REGION + 1."""

    small_region: int = 0
    model_rows: int | None = None

    def params(self) -> dict:
        return {"small_region": int(self.small_region),
                "model_rows": None if self.model_rows is None else int(self.model_rows)}


def region_threshold(rows: int | None) -> int:
    """The most embeddings a region's bounding box may hold to be ranked exactly, for a model whose
    HNSW index holds ROWS rows (None: a model without a valid index, whose every region is ranked
    exactly since there is no graph to walk)."""
    if rows is None:
        return UNLIMITED_REGION
    return max(SMALL_REGION_MIN, round(SMALL_REGION_PER_SQRT * math.sqrt(max(rows, 0))))


def region_plan(conn: Connection | None, model_id: int) -> RegionPlan:
    """The model's RegionPlan: its threshold (region_threshold) and size, both from the rows its
    HNSW index recorded at its last build or update (index.read_index)."""
    return _plan_of(read_index(conn, model_id))


def _plan_of(index: IndexState) -> RegionPlan:
    if not index.valid:
        return RegionPlan(region_threshold(None))
    return RegionPlan(region_threshold(index.rows or 0), index.rows)


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
    inliers: int | None = None  # with re-ranking: SIFT inliers with the query (geoloc.retrieval.rerank)

    def to_json(self) -> dict:
        d = asdict(self)
        d["file"] = str(self.file)
        d["capture_month"] = iso_month(self.capture_month, None)
        return d


def neighbour_of(row) -> Neighbour:
    """A Neighbour from a result row with knn.sql's column names."""
    return Neighbour(row.rank, row.image_id, row.location_id, row.heading, row.capture_month, float(row.distance),
                     image_file(row), row.split, row.version, row.lat, row.lng)


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
    if lat is None or not is_latlng(lat, lng):
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


def require_embeddings(conn: Connection | None, model_name: str, model_id: int) -> None:
    with transaction(conn) as conn:
        found = conn.execute(sqlfiles.text("search/has_embeddings.sql"), {"model_id": model_id}).scalar_one()
    if not found:
        raise NotFound(f"model '{model_name}' has no embeddings", hint=f"run 'geoloc embed --model {model_name}' first")


def require_area(conn: Connection | None, area: str | None) -> None:
    if area is None:
        return
    with transaction(conn) as conn:
        found = conn.execute(sqlfiles.text("search/area_exists.sql"), {"area": area}).scalar_one()
    if not found:
        raise NotFound(f"area '{area}' not found", hint="load it with 'geoloc ingest area FILE --name NAME'")


def knn_statement(dim: int, vtype: VectorType | None = None, explain: str = "") -> sa.TextClause:
    """geoloc/sql/search/knn.sql with the type of the model's index (VTYPE, default vector_type(DIM)) filled
    in (a type modifier cannot be bound) and the query embedding bound as a vector (run it on a
    connection prepared by vectors.bind_vectors); EXPLAIN ("", EXPLAIN_PLAN or EXPLAIN_ANALYZE) is
    put before it."""
    if explain not in ("", EXPLAIN_PLAN, EXPLAIN_ANALYZE):
        raise ValueError(f"explain must be EXPLAIN_PLAN or EXPLAIN_ANALYZE, not {explain!r}")
    source = sqlfiles.source("search/knn.sql", vtype=(vtype or vector_type(dim)).text())
    return sa.text(explain + source).bindparams(vector_param("query"))


def search_type(conn: Connection | None, model_id: int, dim: int) -> VectorType:
    """The type the query must cast to: that of the model's index, or the default without one."""
    return _type_of(read_index(conn, model_id), dim)


def _type_of(index: IndexState, dim: int) -> VectorType:
    return index.vtype(dim) or vector_type(dim)


def set_search_options(conn: Connection, ef_search: int = DEFAULT_EF_SEARCH,
                       max_scan_tuples: int = MAX_SCAN_TUPLES) -> None:
    """Transaction-local planner/index settings the knn query relies on (geoloc/sql/search/search_options.sql)."""
    conn.execute(sqlfiles.text("search/search_options.sql"),
                 {"ef_search": int(ef_search), "max_scan_tuples": int(max_scan_tuples)})


def knn_params(model_id: int, query: np.ndarray, k: int, region: Region, split: str | None,
               version: str | None, plan: RegionPlan) -> dict:
    return {"query": np.asarray(query, np.float32), "model_id": int(model_id), "k": int(k),
            "split": split, "version": version, **plan.params(), **region.params()}


def search_setup(conn: Connection, model_id: int, dim: int, region: Region, vtype: VectorType | None = None,
                 plan: RegionPlan | None = None) -> tuple[VectorType, RegionPlan]:
    """(VTYPE, PLAN) as given, else read from the model's index in one catalog query: the type the
    query casts to (search_type) and where the region's plans switch (region_plan; not needed without
    a region, where knn.sql reads neither value)."""
    if plan is None and region.empty:
        plan = RegionPlan()
    if vtype is None or plan is None:
        index = read_index(conn, model_id)
        vtype = vtype or _type_of(index, dim)
        plan = plan if plan is not None else _plan_of(index)
    return vtype, plan


def knn(conn: Connection, model_id: int, dim: int, query: np.ndarray, k: int = DEFAULT_K,
        region: Region = Region(), split: str | None = None, version: str | None = None,
        vtype: VectorType | None = None, plan: RegionPlan | None = None) -> list[Neighbour]:
    """The k nearest images to one embedding (call set_search_options first in the transaction).
    VTYPE: the type of the model's index (search_type) and PLAN: where the region's plans switch
    (region_plan), looked up when not given (search_setup)."""
    vtype, plan = search_setup(conn, model_id, dim, region, vtype, plan)
    bind_vectors(conn)
    rows = conn.execute(knn_statement(dim, vtype), knn_params(model_id, query, k, region, split, version, plan))
    return [neighbour_of(r) for r in rows]


def explain_lines(conn: Connection, model_id: int, dim: int, query: np.ndarray, k: int = DEFAULT_K,
                  region: Region = Region(), vtype: VectorType | None = None, plan: RegionPlan | None = None,
                  explain: str = EXPLAIN_ANALYZE) -> list[str]:
    """The lines EXPLAIN (EXPLAIN_ANALYZE or EXPLAIN_PLAN) prints for knn's statement on this query."""
    vtype, plan = search_setup(conn, model_id, dim, region, vtype, plan)
    bind_vectors(conn)
    rows = conn.execute(knn_statement(dim, vtype, explain),
                        knn_params(model_id, query, k, region, None, None, plan))
    return list(rows.scalars())


def explain(conn: Connection, model_id: int, dim: int, query: np.ndarray, k: int = DEFAULT_K,
            region: Region = Region(), vtype: VectorType | None = None, plan: RegionPlan | None = None) -> str:
    """Which plan knn's statement ran for this query: 'hnsw' (the model's HNSW index), 'gist+exact'
    (the region's embeddings through the GiST index, ranked exactly) or 'seq' (neither: no index)."""
    return plan_of(explain_lines(conn, model_id, dim, query, k, region, vtype, plan))


def plan_of(lines: list[str]) -> str:
    """Name the plan of EXPLAIN ANALYZE lines of knn's statement by the scans that actually ran."""
    ran = [ln for ln in lines if "never executed" not in ln]
    if any("embeddings_hnsw_" in ln for ln in ran):
        return "hnsw"
    if any(GEO_INDEX in ln for ln in ran):
        return "gist+exact"
    return "seq"


@contextmanager
def reading(conn: Connection | None = None, read_url: str | None = None) -> Iterator[Connection]:
    """CONN when given; otherwise a transaction on READ_URL (e.g. a streaming replica made by `geoloc
    db replica`), else GEOLOC_READ_DATABASE_URL, else the configured database: a search only reads."""
    from .. import config

    if conn is not None:
        yield conn
        return
    with begin(config.normalise_url(read_url, "--read-url") if read_url else config.read_database_url()) as new:
        yield new


def prepare_search(images: Sequence[Path], model: str, k: int, near, within_m: float | None, area: str | None,
                   conn: Connection | None = None, read_url: str | None = None, check: Callable | None = None):
    """(embedder, region, photo paths) after every check a search makes before embedding anything:
    photos given and readable, k in range, the region, the model with embeddings, the area; CHECK(conn,
    embedder) adds a caller's own test inside the same transaction (see `reading` for CONN, READ_URL)."""
    from .. import config
    from .embed import load_embedder

    if read_url:
        config.normalise_url(read_url, "--read-url")  # a bad URL is named before any photo is read
    if not images:
        raise InputError("no image given: name at least one photo to search for")
    if not 1 <= k <= MAX_K:
        raise InputError(f"-k {k}: must be between 1 and {MAX_K}")
    region = make_region(near, within_m, area)
    paths = [check_query_image(Path(p)) for p in images]
    with reading(conn, read_url) as conn:
        emb = load_embedder(conn, model)
        require_embeddings(conn, emb.name, emb.model_id)
        require_area(conn, region.area)
        if check is not None:
            check(conn, emb)
    return emb, region, paths


def rerank_neighbours(query: Path, neighbours: list[Neighbour], params: RerankParams,
                      verifier: Verifier) -> list[Neighbour]:
    """NEIGHBOURS with the first PARAMS.top re-ranked by their geometry with the QUERY photo
    (geoloc.retrieval.rerank), renumbered, each re-ranked one with its inliers."""
    ranked = rerank_candidates(query, neighbours, lambda n: n.file, lambda n: 1.0 - n.distance, params, verifier)
    return [replace(n, rank=rank, inliers=inliers) for rank, (n, inliers) in enumerate(ranked, start=1)]


def search(images: Sequence[Path], model: str, k: int = DEFAULT_K, near: str | tuple[float, float] | None = None,
           within_m: float | None = None, area: str | None = None, split: str | None = None,
           version: str | None = None, ef_search: int = DEFAULT_EF_SEARCH, read_url: str | None = None,
           conn: Connection | None = None, rerank: RerankParams | None = None) -> list[QueryResult]:
    """Where were IMAGES taken? The k nearest database images for each, its best match and a consensus.

    Every query of a search only reads: it runs in CONN when given, else on READ_URL, else
    GEOLOC_READ_DATABASE_URL, else the configured database (`reading`); the photos are embedded
    between the checks and the queries, outside any transaction of its own. With RERANK the nearest
    max(k, RERANK.top) images are fetched and their first RERANK.top re-ranked by geometry with the
    photo (after the queries, outside the transaction) before the k best are kept."""
    check_rerank(rerank)
    emb, region, paths = prepare_search(images, model, k, near, within_m, area, conn, read_url)
    vectors = emb.embed(paths)
    fetch = fetch_count(k, rerank)
    found = []
    with reading(conn, read_url) as conn:
        set_search_options(conn, max(ef_search, fetch))
        vtype, plan = search_setup(conn, emb.model_id, emb.dim, region)
        for path, v in zip(paths, vectors):
            found.append(knn(conn, emb.model_id, emb.dim, v, fetch, region, split, version, vtype, plan))
    verifier = Verifier() if rerank is not None else None
    results = []
    for path, neighbours in zip(paths, found):
        if rerank is not None:
            neighbours = rerank_neighbours(path, neighbours, rerank, verifier)[:k]
        results.append(QueryResult(path, neighbours, neighbours[0] if neighbours else None,
                                   consensus(neighbours), region))
    return results
