"""The hybrid search: cell probabilities and the cell-restricted k nearest images in one SQL statement.

geoloc/sql/search/knn_cells.sql computes the model's cell probabilities from the query embedding (the heads
are rows of model_cells), combines the levels hierarchically and searches the k nearest images under
the HNSW index only inside the top cells' polygons. The hybrid prediction is the consensus of those
neighbours; when no database image lies in the top cells it falls back to the best cell's centroid
(the cells-only prediction, the mean position of the cell's training images).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import transaction
from ..errors import InputError, NotFound
from ..retrieval.consensus import consensus
from ..retrieval.index import VectorType
from ..retrieval.rerank import RerankParams, Verifier, check_params as check_rerank, fetch_count
from ..retrieval.search import (DEFAULT_EF_SEARCH, DEFAULT_K, EXPLAIN_PLAN, Neighbour, QueryResult, Region,
                                neighbour_of, prepare_search, reading, rerank_neighbours, search_type,
                                set_search_options)
from ..retrieval.vectors import bind_vectors, vector_param
from ..cells.defaults import SEARCH_TOP_CELLS, SHOW_CELLS

DEFAULT_TOP_CELLS = SEARCH_TOP_CELLS  # 0: neighbours from anywhere, cell probabilities reported beside them
DEFAULT_SHOW_CELLS = SHOW_CELLS
MAX_CELLS = 1000


@dataclass
class CellProbability:
    rank: int
    cell_id: int
    level: int
    h3: str
    probability: float
    lat: float  # centroid: mean position of the cell's training images
    lng: float


@dataclass
class HybridResult(QueryResult):
    cells: list[CellProbability] = field(default_factory=list)
    top_cells: int = DEFAULT_TOP_CELLS
    prediction: dict | None = None  # the hybrid prediction: lat, lng, source

    def to_json(self) -> dict:
        out = super().to_json()
        out["cells"] = [asdict(c) for c in self.cells]
        out["top_cells"] = self.top_cells
        out["hybrid"] = self.prediction
        return out


def knn_cells_statement(vtype: VectorType, explain: str = "") -> sa.TextClause:
    """geoloc/sql/search/knn_cells.sql for a model whose index casts to VTYPE (see search.search_type), the
    query embedding bound as a vector (vectors.bind_vectors); EXPLAIN ("" or search.EXPLAIN_PLAN) is
    put before it."""
    if explain not in ("", EXPLAIN_PLAN):
        raise ValueError(f"explain must be EXPLAIN_PLAN, not {explain!r}")
    heads = VectorType("vector", vtype.dim)
    source = sqlfiles.source("search/knn_cells.sql", vtype=vtype.text(), htype=heads.text())
    return sa.text(explain + source).bindparams(vector_param("query"))


def model_has_cells(conn: Connection | None, model_id: int) -> bool:
    with transaction(conn) as conn:
        return bool(conn.execute(sqlfiles.text("cells/model_has_cells.sql"), {"model_id": model_id}).scalar_one())


def knn_cells_params(model_id: int, query: np.ndarray, k: int = DEFAULT_K, top_cells: int = DEFAULT_TOP_CELLS,
                     show_cells: int = DEFAULT_SHOW_CELLS, region: Region = Region(), split: str | None = None,
                     version: str | None = None, database_only: bool = False, cell_level: int | None = None) -> dict:
    """The bind parameters of geoloc/sql/search/knn_cells.sql."""
    return {"query": np.asarray(query, np.float32), "model_id": int(model_id), "k": int(k),
            "top_cells": int(top_cells), "show_cells": int(show_cells), "split": split, "version": version,
            "database_only": bool(database_only), "cell_level": cell_level, **region.params()}


def knn_cells(conn: Connection, model_id: int, dim: int, query: np.ndarray, k: int = DEFAULT_K,
              top_cells: int = DEFAULT_TOP_CELLS, show_cells: int = DEFAULT_SHOW_CELLS, region: Region = Region(),
              split: str | None = None, version: str | None = None, database_only: bool = False,
              cell_level: int | None = None) -> tuple[list[CellProbability], list[Neighbour]]:
    """Run geoloc/sql/search/knn_cells.sql (after set_search_options): (top cells, restricted neighbours)."""
    params = knn_cells_params(model_id, query, k, top_cells, show_cells, region, split, version, database_only,
                              cell_level)
    bind_vectors(conn)
    rows = conn.execute(knn_cells_statement(search_type(conn, model_id, dim)), params).all()
    cells = [CellProbability(r.rank, r.cell_id, r.level, r.h3, float(r.probability), r.lat, r.lng)
             for r in rows if r.kind == "cell"]
    neighbours = [neighbour_of(r) for r in rows if r.kind == "image"]
    return cells, neighbours


def hybrid_prediction(cells: list[CellProbability], neighbours: list[Neighbour], restricted: bool = True) -> dict | None:
    if neighbours:
        c = consensus(neighbours)
        source = "consensus of cell neighbours" if restricted else "consensus of neighbours (no cell restriction)"
        return {"lat": c.lat, "lng": c.lng, "location_id": c.location_id, "source": source}
    if cells:
        return {"lat": cells[0].lat, "lng": cells[0].lng, "location_id": None, "source": "best cell centroid"}
    return None


def hybrid_search(images: Sequence[Path], model: str, k: int = DEFAULT_K, top_cells: int = DEFAULT_TOP_CELLS,
                  show_cells: int = DEFAULT_SHOW_CELLS, cell_level: int | None = None, near=None,
                  within_m: float | None = None,
                  area: str | None = None, split: str | None = None, version: str | None = None,
                  ef_search: int = DEFAULT_EF_SEARCH, read_url: str | None = None,
                  conn: Connection | None = None, rerank: RerankParams | None = None) -> list[HybridResult]:
    """Where were IMAGES taken? Cell probabilities and the k nearest images inside the top cells
    (CONN, READ_URL: which database it reads, as for search.search). With RERANK the nearest
    max(k, RERANK.top) images are fetched and re-ranked by geometry as search.search does, and the
    hybrid prediction is the consensus of the k kept."""
    if not 0 <= top_cells <= MAX_CELLS:
        raise InputError(f"--top-cells {top_cells}: must be between 0 (no restriction) and {MAX_CELLS}")
    check_rerank(rerank)

    def has_heads(conn, emb) -> None:
        if not model_has_cells(conn, emb.model_id):
            raise NotFound(f"model '{emb.name}' has no cell heads",
                           hint="train one with 'geoloc train --cells PARTITION', or search without --cells")

    emb, region, paths = prepare_search(images, model, k, near, within_m, area, conn, read_url, check=has_heads)
    vectors = emb.embed(paths)
    fetch = fetch_count(k, rerank)
    found = []
    with reading(conn, read_url) as conn:
        set_search_options(conn, max(ef_search, fetch))
        for v in vectors:
            found.append(knn_cells(conn, emb.model_id, emb.dim, v, fetch, top_cells, show_cells, region, split,
                                   version, cell_level=cell_level))
    verifier = Verifier() if rerank is not None else None
    results = []
    for path, (cells, neighbours) in zip(paths, found):
        if rerank is not None:  # after the queries, outside the transaction
            neighbours = rerank_neighbours(path, neighbours, rerank, verifier)
        neighbours = neighbours[:k]
        results.append(HybridResult(path, neighbours, neighbours[0] if neighbours else None, consensus(neighbours),
                                    region, cells, top_cells, hybrid_prediction(cells, neighbours, top_cells > 0)))
    return results


def has_cells(model: str, read_url: str | None = None, conn: Connection | None = None) -> bool:
    """Whether registered model MODEL has cell heads (False for unknown names and the baseline), in
    the database a search with CONN, READ_URL reads (search.reading)."""
    from ..db.models import get_model

    with reading(conn, read_url) as conn:
        try:
            row = get_model(conn, model)
        except NotFound:
            return False
        return model_has_cells(conn, row.id)


def print_cells(res: HybridResult, echo) -> None:
    """The text report of one hybrid result: cell probabilities and the hybrid prediction."""
    where = f"the top {res.top_cells} cells" if res.top_cells else "anywhere (--top-cells N to restrict)"
    echo(f"  geo-cells (hierarchical probability; neighbours from {where}):")
    for c in res.cells:
        echo(f"    {c.rank:>2}. cell {c.cell_id} {c.h3} (level {c.level})  p={c.probability:.3f}  "
             f"centroid {c.lat:.6f}, {c.lng:.6f}")
    p = res.prediction
    if p is not None:
        echo(f"  hybrid prediction: {p['lat']:.6f}, {p['lng']:.6f} ({p['source']})")
