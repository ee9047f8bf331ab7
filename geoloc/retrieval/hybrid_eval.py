"""`geoloc evaluate --cells`: cells-only vs retrieval-only vs hybrid vs the thumbnail baseline.

Same queries and database for all (the original protocol: per location and heading of the split the
newest image is the query, every other image of the split is the database):
- retrieval-only and the thumbnail baseline: geoloc.retrieval.evaluate (exact search; top-1 match);
- cells-only: the best finest cell's centroid (hierarchical probability, computed in SQL);
- hybrid: the top-1 neighbour found by geoloc/sql/search/knn_cells.sql inside the top cells (the same
  statement `geoloc search` runs, with the query images left out of the database), or the best cell's
  centroid when no database image lies in those cells.
With re-ranking (geoloc.retrieval.rerank) two more: retrieval+rerank (geoloc.retrieval.evaluate's
'model+rerank') and hybrid+rerank, the hybrid's neighbours re-ranked by geometry with the query image
before the top-1 and the vote are read, as `geoloc search --rerank` does for a model with cell heads.
Errors are metres in SWEREF99 TM (EPSG:3006). The cells and hybrid runs are stored in eval_runs
(methods 'cells', 'hybrid' and 'hybrid+rerank') with one eval_predictions row per query, like the
other methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..db import sqlfiles
from ..db.engine import begin
from ..errors import InputError
from ..imagefile import check_file
from ..retrieval import evaluate as R
from ..retrieval.rerank import RerankParams, Verifier, fetch_count
from ..retrieval.search import rerank_neighbours, set_search_options
from ..cells.defaults import EVAL_CELL_LEVEL, EVAL_TOP_CELLS, SHOW_CELLS
from .hybrid import knn_cells, model_has_cells

WITHIN_M = (25, 100, 250, 1000, 2500)


@dataclass
class MethodRow:
    method: str  # cells, retrieval, hybrid, baseline; retrieval+rerank, hybrid+rerank with re-ranking
    model: str
    queries: int
    errors: list[float] = field(repr=False)
    recall: dict[int, float] | None = None  # Recall@1/5 where a ranked list of images exists
    extra: dict = field(default_factory=dict)
    run_id: int | None = None

    def within(self) -> dict[int, float]:
        e = np.asarray(self.errors, float)
        return {m: float((e <= m).mean()) if e.size else float("nan") for m in WITHIN_M}

    def summary(self) -> dict:
        return {"within_m": {str(m): v for m, v in self.within().items()},
                "error_m": R.error_summary(self.errors),
                "recall": None if self.recall is None else {str(n): v for n, v in self.recall.items()},
                **self.extra}


@dataclass
class CellsReport:
    split: str
    version: str | None
    top_cells: int
    cell_level: int | None  # level whose cells restrict the hybrid (None: the finest)
    queries: int
    database: int
    rows: list[MethodRow]
    rerank: dict | None = None  # the re-ranking parameters, when re-ranked runs are included

    def to_json(self) -> dict:
        return {"split": self.split, "version": self.version, "top_cells": self.top_cells,
                "cell_level": self.cell_level, "queries": self.queries,
                "database": self.database, **({"rerank": self.rerank} if self.rerank else {}),
                "methods": [{"method": r.method, "model": r.model, "run_id": r.run_id, "queries": r.queries,
                             **r.summary()} for r in self.rows]}


def _transformer():
    from pyproj import Transformer

    return Transformer.from_crs(4326, 3006, always_xy=True)


def _metres(tr, lat1, lng1, lat2, lng2) -> float:
    x1, y1 = tr.transform(lng1, lat1)
    x2, y2 = tr.transform(lng2, lat2)
    return float(np.hypot(x1 - x2, y1 - y2))


def evaluate_cells(model: str, split: str = "test", version: str | None = None,
                   top_cells: int = EVAL_TOP_CELLS, k: int = R.DEFAULT_K, cell_level: int | None = EVAL_CELL_LEVEL,
                   store: bool = True, progress: bool = False, rerank: RerankParams | None = None) -> CellsReport:
    """The four methods side by side on SPLIT/VERSION (six with RERANK); the cells and hybrid runs are
    stored."""
    from ..db.models import get_model

    if not 1 <= top_cells <= 1000:
        raise InputError(f"--top-cells {top_cells}: must be between 1 and 1000")
    R.check_options(model, None, split, version, k, R.DEFAULT_CONSENSUS_K, rerank=rerank)
    with begin() as conn:
        row = get_model(conn, model)
        if not model_has_cells(conn, row.id):
            raise InputError(f"model '{model}' has no cell heads",
                             hint="train one with 'geoloc train --cells PARTITION'")
    tr = _transformer()
    with begin() as conn:
        queries, cells_out, hybrid_out = _cells_and_hybrid(conn, row, split, version, top_cells, k, rerank, cell_level,
                                                           tr)
        files = R.image_files(conn, [q.query_image_id for q in queries]) if rerank is not None else {}
    if rerank is not None:  # a missing file is named before anything is stored or compared
        for path in [*files.values(), *(n.file for q in queries for n in q.neighbours[:rerank.top])]:
            check_file(path)
    verifier = Verifier() if rerank is not None else None  # one cache of features for both re-rankings
    base = R.evaluate(model, split=split, version=version, k=k, store=store, progress=progress, rerank=rerank,
                      verifier=verifier)
    names = {"model": "retrieval", R.method_name(("rerank",)): "retrieval+rerank", "baseline": "baseline"}
    rows = {}
    for m in base.methods:
        rows[names[m.method]] = MethodRow(names[m.method], m.model, m.queries, [o.top1_error_m for o in m.outcomes],
                                          {n: m.recall[n] for n in (1, 5) if n in m.recall}, run_id=m.run_id)
    rows["cells"] = MethodRow("cells", row.name, len(cells_out), [o["error_m"] for o in cells_out],
                              extra={"cell_accuracy": {str(n): float(np.mean([o["true_rank"] is not None
                                                                              and o["true_rank"] <= n
                                                                              for o in cells_out]))
                                                       for n in (1, SHOW_CELLS)}})
    outs = {"cells": cells_out, "hybrid": hybrid_out}
    if rerank is not None:  # the images compared after the transaction, as the search does
        from tqdm import tqdm

        outs["hybrid+rerank"] = [
            _hybrid_outcome(tr, q, rerank_neighbours(files[q.query_image_id], q.neighbours, rerank, verifier)[:k], cell)
            for q, cell in tqdm(list(zip(queries, cells_out)), desc="re-ranking the hybrid", unit="query",
                                disable=not progress)]
    for method in [m for m in outs if m.startswith("hybrid")]:
        o = outs[method]
        rows[method] = MethodRow(method, row.name, len(o), [x["error_m"] for x in o],
                                 R.recall_at([x["first_correct"] for x in o], (1, 5)),
                                 extra={"fallback_to_cell": int(sum(x["location_id"] is None for x in o)),
                                        "consensus_error_m": R.error_summary(x["consensus_error_m"] for x in o)})
    if store:
        with begin() as conn:
            for method, o in outs.items():
                rows[method].run_id = _store(conn, row.id, rows[method], o, split, version, top_cells, k, cell_level,
                                             rerank if method.endswith("+rerank") else None)
    order = ["cells", "retrieval", "hybrid", "retrieval+rerank", "hybrid+rerank", "baseline"]
    first = base.methods[0]
    return CellsReport(split, version, top_cells, cell_level, first.queries, first.database,
                       [rows[m] for m in order if m in rows], rerank.to_json() if rerank is not None else None)


@dataclass
class _HybridQuery:
    """One query of the hybrid evaluation: where it was taken and the neighbours found inside its top cells."""

    query_image_id: int
    lat: float
    lng: float
    neighbours: list = field(repr=False)


def _hybrid_outcome(tr, q: _HybridQuery, neighbours: list, cell: dict) -> dict:
    """The hybrid's prediction for Q from NEIGHBOURS (top-1, first correct rank, consensus), or the best
    cell's (CELL: its cells-only outcome) when there are none."""
    if not neighbours:
        return {**cell, "consensus_error_m": cell["error_m"]}
    errs = [_metres(tr, q.lat, q.lng, n.lat, n.lng) for n in neighbours]
    first = next((rank for rank, e in enumerate(errs, start=1) if e <= R.CORRECT_M), None)
    c = R.consensus(neighbours[:R.DEFAULT_CONSENSUS_K])
    top = neighbours[0]
    return {"query_image_id": q.query_image_id, "lat": top.lat, "lng": top.lng, "location_id": top.location_id,
            "error_m": errs[0], "first_correct": first, "consensus": (c.location_id, c.lat, c.lng),
            "consensus_error_m": _metres(tr, q.lat, q.lng, c.lat, c.lng)}


def _cells_and_hybrid(conn, row, split, version, top_cells, k, rerank, cell_level, tr):
    """(the queries with the neighbours fetched for each, cells-only outcomes, hybrid outcomes)."""
    from ..retrieval.vectors import with_vector_columns

    rows = conn.execute(with_vector_columns(sqlfiles.text("cells/eval_queries.sql"), "embedding"),
                        {"model_id": row.id, "split": split, "version": version, "level": None,
                         "partition_id": row.hyperparams["cells_partition_id"]}).all()
    fetch = fetch_count(k, rerank)
    set_search_options(conn, max(R.DEFAULT_K, fetch))
    queries, cells_out, hybrid_out = [], [], []
    for r in rows:
        vec = np.asarray(r.embedding, np.float32)
        cells, neighbours = knn_cells(conn, row.id, row.dim, vec, fetch, top_cells, SHOW_CELLS,
                                      split=split, version=version, database_only=True, cell_level=cell_level)
        if cell_level is not None:  # cells-only always predicts with the finest level
            cells, _ = knn_cells(conn, row.id, row.dim, vec, 1, 0, SHOW_CELLS, split=split, version=version)
        best = cells[0]
        true_rank = next((c.rank for c in cells if c.cell_id == r.true_cell), None)
        q = _HybridQuery(r.id, r.lat, r.lng, neighbours)
        cells_out.append({"query_image_id": q.query_image_id, "lat": best.lat, "lng": best.lng, "location_id": None,
                          "error_m": _metres(tr, q.lat, q.lng, best.lat, best.lng), "true_rank": true_rank,
                          "first_correct": None, "consensus": None})
        hybrid_out.append(_hybrid_outcome(tr, q, neighbours[:k], cells_out[-1]))
        queries.append(q)
    return queries, cells_out, hybrid_out


def _store(conn, model_id: int, r: MethodRow, outs: list[dict], split, version, top_cells: int, k: int,
           cell_level: int | None, rerank: RerankParams | None = None) -> int:
    metrics = {"queries": r.queries, **r.summary(), "top_cells": top_cells, "cell_level": cell_level, "k": k,
               "correct_within_m": R.CORRECT_M, "search": "hnsw (geoloc/sql/search/knn_cells.sql)",
               **({"rerank": rerank.to_json()} if rerank is not None else {})}
    run_id = R.insert_run(conn, model_id, r.method, split, version, metrics)
    conn.execute(sqlfiles.text("cells/insert_predictions.sql"), {
        "run_id": run_id,
        "query_image_id": [o["query_image_id"] for o in outs],
        "top1_location_id": [o["location_id"] for o in outs],
        "top1_lat": [o["lat"] for o in outs], "top1_lng": [o["lng"] for o in outs],
        "top1_error_m": [o["error_m"] for o in outs],
        "consensus_location_id": [o["consensus"][0] if o["consensus"] else None for o in outs],
        "consensus_lat": [o["consensus"][1] if o["consensus"] else None for o in outs],
        "consensus_lng": [o["consensus"][2] if o["consensus"] else None for o in outs],
        "consensus_error_m": [o.get("consensus_error_m") if o["consensus"] else None for o in outs],
        "first_correct_rank": [o["first_correct"] for o in outs]})
    return run_id


def report_rows(report: CellsReport) -> list[tuple[str, list[str]]]:
    """The table `geoloc evaluate --cells` prints: one column per method."""
    def pct(v):
        return "-" if v is None or v != v else f"{100 * v:.1f} %"

    rows = [("", [f"{r.method}" for r in report.rows])]
    for m in WITHIN_M:
        label = f"within {m / 1000:g} km" if m >= 1000 else f"within {m} m"
        rows.append((label, [pct(r.within()[m]) for r in report.rows]))
    rows.append(("median error (m)", [f"{R.error_summary(r.errors)['median']:.0f}" for r in report.rows]))
    rows.append(("p90 error (m)", [f"{R.error_summary(r.errors)['p90']:.0f}" for r in report.rows]))
    for n in (1, 5):
        rows.append((f"Recall@{n}", [pct(r.recall.get(n)) if r.recall else "-" for r in report.rows]))
    rows.append((f"true cell in top 1/{SHOW_CELLS}",
                 [f"{pct(r.extra['cell_accuracy']['1'])} / {pct(r.extra['cell_accuracy'][str(SHOW_CELLS)])}"
                  if "cell_accuracy" in r.extra else "-" for r in report.rows]))
    return rows
