"""`geoloc evaluate --cells`: cells-only vs retrieval-only vs hybrid vs the thumbnail baseline.

Same queries and database for all (the original protocol: per location and heading of the split the
newest image is the query, every other image of the split is the database):
- retrieval-only and the thumbnail baseline: geoloc.retrieval.evaluate (exact search; top-1 match);
- cells-only: the best finest cell's centroid (hierarchical probability, computed in SQL);
- hybrid: the top-1 neighbour found by geoloc/sql/search/knn_cells.sql inside the top cells (the same
  statement `geoloc search` runs, with the query images left out of the database), or the best cell's
  centroid when no database image lies in those cells.
Errors are metres in SWEREF99 TM (EPSG:3006). The cells and hybrid runs are stored in eval_runs
(methods 'cells' and 'hybrid') with one eval_predictions row per query, like the other methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..db import sqlfiles
from ..db.engine import begin
from ..errors import InputError
from ..retrieval import evaluate as R
from ..retrieval.search import set_search_options
from ..cells.defaults import EVAL_CELL_LEVEL, EVAL_TOP_CELLS, SHOW_CELLS
from .hybrid import knn_cells, model_has_cells

WITHIN_M = (25, 100, 250, 1000, 2500)


@dataclass
class MethodRow:
    method: str  # cells, retrieval, hybrid, baseline
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

    def to_json(self) -> dict:
        return {"split": self.split, "version": self.version, "top_cells": self.top_cells,
                "cell_level": self.cell_level, "queries": self.queries,
                "database": self.database,
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
                   store: bool = True, progress: bool = False) -> CellsReport:
    """The four methods side by side on SPLIT/VERSION; the cells and hybrid runs are stored."""
    from ..db.models import get_model

    if not 1 <= top_cells <= 1000:
        raise InputError(f"--top-cells {top_cells}: must be between 1 and 1000")
    with begin() as conn:
        row = get_model(conn, model)
        if not model_has_cells(conn, row.id):
            raise InputError(f"model '{model}' has no cell heads",
                             hint="train one with 'geoloc train --cells PARTITION'")
    base = R.evaluate(model, split=split, version=version, k=k, store=store, progress=progress)
    tr = _transformer()
    rows = []
    for m in base.methods:
        rows.append(MethodRow("retrieval" if m.method == "model" else "baseline", m.model, m.queries,
                              [o.top1_error_m for o in m.outcomes],
                              {n: m.recall[n] for n in (1, 5) if n in m.recall}, run_id=m.run_id))
    with begin() as conn:
        cells_out, hybrid_out = _cells_and_hybrid(conn, row, split, version, top_cells, k, cell_level, tr)
        cells_row = MethodRow("cells", row.name, len(cells_out), [o["error_m"] for o in cells_out],
                              extra={"cell_accuracy": {str(n): float(np.mean([o["true_rank"] is not None
                                                                                and o["true_rank"] <= n
                                                                                for o in cells_out]))
                                                       for n in (1, SHOW_CELLS)}})
        hybrid_row = MethodRow("hybrid", row.name, len(hybrid_out), [o["error_m"] for o in hybrid_out],
                               R.recall_at([o["first_correct"] for o in hybrid_out], (1, 5)),
                               extra={"fallback_to_cell": int(sum(o["location_id"] is None for o in hybrid_out)),
                                      "consensus_error_m": R.error_summary(o["consensus_error_m"]
                                                                           for o in hybrid_out)})
        for r, outs in ((cells_row, cells_out), (hybrid_row, hybrid_out)):
            if store:
                r.run_id = _store(conn, row.id, r, outs, split, version, top_cells, k, cell_level)
    rows = [cells_row, rows[0], hybrid_row, *rows[1:]]
    first = base.methods[0]
    return CellsReport(split, version, top_cells, cell_level, first.queries, first.database, rows)


def _cells_and_hybrid(conn, row, split, version, top_cells, k, cell_level, tr):
    from ..retrieval.vectors import with_vector_columns

    queries = conn.execute(with_vector_columns(sqlfiles.text("cells/eval_queries.sql"), "embedding"),
                           {"model_id": row.id, "split": split, "version": version, "level": None,
                            "partition_id": row.hyperparams["cells_partition_id"]}).all()
    set_search_options(conn, max(R.DEFAULT_K, k))
    cells_out, hybrid_out = [], []
    for q in queries:
        qid, lat, lng, true_cell = q.id, q.lat, q.lng, q.true_cell
        vec = np.asarray(q.embedding, np.float32)
        cells, neighbours = knn_cells(conn, row.id, row.dim, vec, k, top_cells, SHOW_CELLS,
                                      split=split, version=version, database_only=True, cell_level=cell_level)
        if cell_level is not None:  # cells-only always predicts with the finest level
            cells, _ = knn_cells(conn, row.id, row.dim, vec, 1, 0, SHOW_CELLS, split=split, version=version)
        best = cells[0]
        true_rank = next((c.rank for c in cells if c.cell_id == true_cell), None)
        cells_out.append({"query_image_id": qid, "lat": best.lat, "lng": best.lng, "location_id": None,
                          "error_m": _metres(tr, lat, lng, best.lat, best.lng), "true_rank": true_rank,
                          "first_correct": None, "consensus": None})
        if neighbours:
            errs = [_metres(tr, lat, lng, n.lat, n.lng) for n in neighbours]
            first = next((n.rank for n, e in zip(neighbours, errs) if e <= R.CORRECT_M), None)
            c = R.consensus(neighbours[:R.DEFAULT_CONSENSUS_K])
            top = neighbours[0]
            hybrid_out.append({"query_image_id": qid, "lat": top.lat, "lng": top.lng, "location_id": top.location_id,
                               "error_m": errs[0], "first_correct": first,
                               "consensus": (c.location_id, c.lat, c.lng),
                               "consensus_error_m": _metres(tr, lat, lng, c.lat, c.lng)})
        else:
            hybrid_out.append({**cells_out[-1], "consensus_error_m": cells_out[-1]["error_m"]})
    return cells_out, hybrid_out


def _store(conn, model_id: int, r: MethodRow, outs: list[dict], split, version, top_cells: int, k: int,
           cell_level: int | None) -> int:
    metrics = {"queries": r.queries, **r.summary(), "top_cells": top_cells, "cell_level": cell_level, "k": k,
               "correct_within_m": R.CORRECT_M, "search": "hnsw (geoloc/sql/search/knn_cells.sql)"}
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
