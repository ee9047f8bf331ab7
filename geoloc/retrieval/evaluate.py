"""`geoloc evaluate`: the original protocol, in SQL, for a model and the thumbnail baseline side by side.

Per (location, heading) of a split (and scraping version) the newest image is the query and all other
images are the database; a retrieved image is correct within 25 m of the query's location. One
statement (sql/evaluate/knn_all.sql) finds the k nearest database images of every query by exact
search, so the figures measure the embeddings, not the index. Recall@N, and the top-1 and consensus
position errors (metres in EPSG:3006), are computed here from its rows; the run and every query's
prediction are stored (eval_runs, eval_predictions; drawn by the view v_eval_predictions).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from psycopg import sql

from ..db import sqlfiles
from ..db.engine import begin, psycopg_connection
from ..errors import InputError, NotFound
from ..splits import SPLITS
from .baseline import THUMBNAIL_MODEL, baseline_model_name
from .consensus import consensus
from .index import vector_type

CORRECT_M = 25.0
RECALL_AT = (1, 5, 10, 20)
DEFAULT_K = 20
DEFAULT_CONSENSUS_K = 5  # as many neighbours as `geoloc search` shows by default
DEFAULT_SPLIT = "test"


@dataclass(frozen=True)
class Hit:
    """One retrieved image of one query (a row of sql/evaluate/knn_all.sql)."""

    query_image_id: int
    query_location_id: int
    rank: int
    image_id: int
    location_id: int
    distance: float
    error_m: float
    lat: float
    lng: float


@dataclass
class QueryOutcome:
    query_image_id: int
    first_correct_rank: int | None
    top1_location_id: int | None
    top1_error_m: float | None
    consensus_location_id: int | None
    consensus_error_m: float | None


@dataclass
class MethodReport:
    """The figures of one model (or the baseline) on one split."""

    model: str
    model_id: int
    method: str  # 'model' or 'baseline'
    queries: int
    database: int
    recall: dict[int, float]  # N -> share of queries with a correct image among the top N
    top1_error_m: dict[str, float]  # median, p75, p90, mean
    consensus_error_m: dict[str, float]
    run_id: int | None = None
    outcomes: list[QueryOutcome] = field(default_factory=list, repr=False)

    def metrics(self) -> dict:
        return {"queries": self.queries, "database": self.database,
                "recall": {str(n): r for n, r in self.recall.items()},
                "top1_error_m": self.top1_error_m, "consensus_error_m": self.consensus_error_m}


@dataclass
class EvalReport:
    split: str
    version: str | None
    k: int
    consensus_k: int
    search: str  # how neighbours were found
    methods: list[MethodReport]

    def to_json(self) -> dict:
        return {"split": self.split, "version": self.version, "k": self.k, "consensus_k": self.consensus_k,
                "search": self.search, "correct_within_m": CORRECT_M,
                "methods": [{"model": m.model, "method": m.method, "run_id": m.run_id, **m.metrics()}
                            for m in self.methods]}


# ---------------------------------------------------------------------------------------- maths

def error_summary(errors: Iterable[float | None]) -> dict[str, float]:
    """median, p75, p90 and mean of the errors in metres (NaN when there are none)."""
    e = np.array([x for x in errors if x is not None], dtype=np.float64)
    if e.size == 0:
        return {"median": float("nan"), "p75": float("nan"), "p90": float("nan"), "mean": float("nan")}
    p50, p75, p90 = np.percentile(e, [50, 75, 90])
    return {"median": float(p50), "p75": float(p75), "p90": float(p90), "mean": float(e.mean())}


def recall_at(first_correct: Iterable[int | None], ns: Iterable[int]) -> dict[int, float]:
    """Share of queries whose first correct neighbour has rank <= N (None: no correct one in the top k)."""
    ranks = list(first_correct)
    if not ranks:
        return {n: float("nan") for n in ns}
    return {n: sum(1 for r in ranks if r is not None and r <= n) / len(ranks) for n in ns}


def outcomes(hits: Iterable[Hit], consensus_k: int, correct_m: float = CORRECT_M) -> list[QueryOutcome]:
    """Per query: rank of the first correct hit, top-1 and consensus predictions and their errors."""
    by_query: dict[int, list[Hit]] = defaultdict(list)
    for h in hits:
        by_query[h.query_image_id].append(h)
    result = []
    for qid, hs in by_query.items():
        hs.sort(key=lambda h: h.rank)
        first = next((h.rank for h in hs if h.error_m <= correct_m), None)
        top = hs[0]
        c = consensus(hs[:consensus_k])
        c_err = next(h.error_m for h in hs if h.location_id == c.location_id)
        result.append(QueryOutcome(qid, first, top.location_id, top.error_m, c.location_id, c_err))
    return result


# ---------------------------------------------------------------------------------------- SQL side

def _check_split(split: str, version: str | None) -> None:
    if split not in SPLITS:
        raise InputError(f"--split '{split}': must be one of {', '.join(SPLITS)}")


def protocol_hits(conn, model_id: int, dim: int, split: str, version: str | None, k: int) -> list[Hit]:
    """The rows of sql/evaluate/knn_all.sql: k exact nearest database images of every query."""
    stmt = sql.SQL(sqlfiles.read("evaluate/knn_all.sql")).format(vtype=vector_type(dim).sql())
    with psycopg_connection(conn).cursor() as cur:
        cur.execute("SET LOCAL work_mem = '64MB'")
        cur.execute(stmt, {"model_id": model_id, "split": split, "version": version, "k": k})
        return [Hit(*r) for r in cur.fetchall()]


def _scope(split: str, version: str | None) -> str:
    return f"split {split}" + (f" {version}" if version else "")


def evaluate_model(conn, model_name: str, split: str, version: str | None = None, k: int = DEFAULT_K,
                   consensus_k: int = DEFAULT_CONSENSUS_K, method: str = "model", store: bool = True) -> MethodReport:
    """Evaluate one registered model whose embeddings of the split exist (inside the caller's transaction)."""
    from ..model.registry import get_model

    row = get_model(conn, model_name)
    params = {"model_id": row.id, "split": split, "version": version}
    with psycopg_connection(conn).cursor() as cur:
        cur.execute(sqlfiles.read("evaluate/protocol_counts.sql"), params)
        images, embedded, queries, locations = cur.fetchone()
    if images == 0:
        raise NotFound(f"{_scope(split, version)} has no images", hint="import them with 'geoloc ingest images DIR'")
    if embedded < images:
        scope = f"--split {split}" + (f" --version {version}" if version else "")
        raise InputError(f"model '{model_name}' lacks embeddings for {images - embedded} of {images} images "
                         f"of {_scope(split, version)}", hint=f"run 'geoloc embed --model {model_name} {scope}'")
    hits = protocol_hits(conn, row.id, row.dim, split, version, k)
    outs = outcomes(hits, consensus_k)
    report = MethodReport(row.name, row.id, method, len(outs), images - queries,
                          recall_at([o.first_correct_rank for o in outs], [n for n in RECALL_AT if n <= k]),
                          error_summary(o.top1_error_m for o in outs),
                          error_summary(o.consensus_error_m for o in outs), outcomes=outs)
    if store:
        report.run_id = store_run(conn, report, split, version, k, consensus_k)
    return report


def store_run(conn, report: MethodReport, split: str, version: str | None, k: int, consensus_k: int) -> int:
    metrics = {**report.metrics(), "k": k, "consensus_k": consensus_k, "correct_within_m": CORRECT_M,
               "search": "exact"}
    outs = report.outcomes
    with psycopg_connection(conn).cursor() as cur:
        cur.execute(sqlfiles.read("evaluate/insert_run.sql"), {
            "model_id": report.model_id, "method": report.method, "split": split, "version": version,
            "metrics": json.dumps(_json_safe(metrics))})
        run_id = cur.fetchone()[0]
        cur.execute(sqlfiles.read("evaluate/insert_predictions.sql"), {
            "run_id": run_id,
            "query_image_id": [o.query_image_id for o in outs],
            "top1_location_id": [o.top1_location_id for o in outs],
            "top1_error_m": [o.top1_error_m for o in outs],
            "consensus_location_id": [o.consensus_location_id for o in outs],
            "consensus_error_m": [o.consensus_error_m for o in outs],
            "first_correct_rank": [o.first_correct_rank for o in outs],
        })
    return run_id


def _json_safe(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def evaluate(model: str | None = None, baseline: str | None = None, split: str = DEFAULT_SPLIT,
             version: str | None = None, k: int = DEFAULT_K, consensus_k: int = DEFAULT_CONSENSUS_K,
             store: bool = True, progress: bool = False, url: str | None = None) -> EvalReport:
    """Evaluate MODEL and the thumbnail baseline (or only BASELINE) on SPLIT/VERSION; store the runs.

    The baseline's thumbnails of the split are computed on first use (seconds); the model's embeddings
    must exist already (`geoloc embed`), since computing them is the model's expensive part.
    """
    from .embed import embed_images

    _check_split(split, version)
    if model is None and baseline is None:
        raise InputError("name a --model to evaluate (or --baseline thumbnail alone)")
    if not 1 <= k <= 1000:
        raise InputError(f"-k {k}: must be between 1 and 1000")
    if not 1 <= consensus_k <= k:
        raise InputError(f"--consensus-k {consensus_k}: must be between 1 and -k ({k})")
    baseline_name = baseline_model_name(baseline or "thumbnail")
    if model is not None:
        with begin(url) as conn:  # an unknown model fails before any baseline work
            from ..model.registry import get_model

            get_model(conn, model)
    embed_images(baseline_name, split=split, version=version, progress=progress, url=url)
    reports = []
    with begin(url) as conn:
        if model is not None:
            method = "baseline" if model == THUMBNAIL_MODEL else "model"
            reports.append(evaluate_model(conn, model, split, version, k, consensus_k, method, store))
        if model != baseline_name:
            reports.append(evaluate_model(conn, baseline_name, split, version, k, consensus_k, "baseline", store))
    return EvalReport(split, version, k, consensus_k, "exact", reports)


def report_rows(report: EvalReport) -> list[tuple[str, list[str]]]:
    """The side-by-side table the CLI prints: (label, one cell per method)."""
    rows = [("", [f"{m.method} {m.model}" for m in report.methods])]
    for n in report.methods[0].recall:
        rows.append((f"Recall@{n}", [f"{m.recall[n]:.3f}" for m in report.methods]))
    for key, label in (("top1_error_m", "top-1 error"), ("consensus_error_m", "consensus error")):
        for stat in ("median", "p75", "p90", "mean"):
            rows.append((f"{label} {stat} (m)", [f"{getattr(m, key)[stat]:.0f}" for m in report.methods]))
    return rows
