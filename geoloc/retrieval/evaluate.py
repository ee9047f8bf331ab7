"""`geoloc evaluate`: the original protocol, in SQL, for a model and the thumbnail baseline side by side.

Per (location, heading) of a split (and scraping version) the newest image is the query and all other
images are the database; a retrieved image is correct within 25 m of the query's location. One
statement (geoloc/sql/evaluate/knn_all.sql) finds the k nearest database images of every query by exact
search, so the figures measure the embeddings, not the index. Distractors (the images of further
splits, none of them a query) make the database larger, as a deployment's is, for the same queries.
Recall@N, and the top-1 and consensus position errors (metres in EPSG:3006), are computed here from its
rows; the run and every query's prediction are stored (eval_runs, eval_predictions; drawn by the view
v_eval_predictions).

With post-processing (geoloc.retrieval.postprocess: whitening learned on the training split, alpha
query expansion, database-side augmentation) the same queries and database are read with their stored
embeddings in one statement (geoloc/sql/evaluate/protocol_vectors.sql) and searched exactly in numpy after
each step, and after all steps combined; each is its own run (method 'model+whiten', ...).

With re-ranking (geoloc.retrieval.rerank) the model's first candidates of every query are re-ordered by
their SIFT geometry with the query image, read from the image files; its own run (method 'model+rerank').
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR

from ..db import sqlfiles
from ..db.engine import begin
from ..errors import InputError, NotFound
from ..imagefile import check_file, image_file
from ..splits import SPLITS
from . import postprocess as post
from .baseline import THUMBNAIL_MODEL, baseline_model_name
from .consensus import consensus
from .index import vector_type
from .rerank import RerankParams, Verifier, check_params as check_rerank, rerank_candidates

CORRECT_M = 25.0
RECALL_AT = (1, 5, 10, 20)
DEFAULT_K = 20
DEFAULT_CONSENSUS_K = 5  # as many neighbours as `geoloc search` shows by default
DEFAULT_SPLIT = "test"
WHITEN_FIT_SPLIT = "train"  # the whitening of --post whiten is learned on this split's embeddings


@dataclass(frozen=True)
class Hit:
    """One retrieved image of one query (a row of geoloc/sql/evaluate/knn_all.sql)."""

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
    post: dict | None = None  # the post-processing parameters, when post-processed runs are included
    distractors: tuple[str, ...] = ()  # splits whose images joined the database
    rerank: dict | None = None  # the re-ranking parameters, when a re-ranked run is included

    def to_json(self) -> dict:
        return {"split": self.split, "version": self.version, "distractors": list(self.distractors),
                "k": self.k, "consensus_k": self.consensus_k, "search": self.search, "correct_within_m": CORRECT_M,
                **({"post": self.post} if self.post else {}), **({"rerank": self.rerank} if self.rerank else {}),
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


def by_query(hits: Iterable[Hit]) -> dict[int, list[Hit]]:
    """HITS grouped by query image (in the order the queries first appear), each group by rank."""
    groups: dict[int, list[Hit]] = defaultdict(list)
    for h in hits:
        groups[h.query_image_id].append(h)
    for hs in groups.values():
        hs.sort(key=lambda h: h.rank)
    return groups


def outcomes(hits: Iterable[Hit], consensus_k: int, correct_m: float = CORRECT_M) -> list[QueryOutcome]:
    """Per query: rank of the first correct hit, top-1 and consensus predictions and their errors."""
    result = []
    for qid, hs in by_query(hits).items():
        first = next((h.rank for h in hs if h.error_m <= correct_m), None)
        top = hs[0]
        c = consensus(hs[:consensus_k])
        c_err = next(h.error_m for h in hs if h.location_id == c.location_id)
        result.append(QueryOutcome(qid, first, top.location_id, top.error_m, c.location_id, c_err))
    return result


# ---------------------------------------------------------------------------------------- SQL side

def _check_split(split: str, version: str | None, distractors: tuple[str, ...] = ()) -> None:
    if split not in SPLITS:
        raise InputError(f"--split '{split}': must be one of {', '.join(SPLITS)}")
    for d in distractors:
        if d not in SPLITS:
            raise InputError(f"--distractors '{d}': must be one of {', '.join(SPLITS)}")
        if d == split:
            raise InputError(f"--distractors '{d}': the split evaluated is in the database already")


def _protocol_params(model_id: int, split: str, version: str | None, distractors: tuple[str, ...] = ()) -> dict:
    return {"model_id": model_id, "split": split, "version": version, "distractors": list(distractors)}


def protocol_hits(conn, model_id: int, dim: int, split: str, version: str | None, k: int,
                  distractors: tuple[str, ...] = ()) -> list[Hit]:
    """The rows of geoloc/sql/evaluate/knn_all.sql: k exact nearest database images of every query."""
    # the vector type (a closed set: vector or halfvec, and an integer) is written in before parsing
    stmt = sa.text(sqlfiles.read("evaluate/knn_all.sql").replace("{vtype}", vector_type(dim).text()))
    conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
    rows = conn.execute(stmt, {**_protocol_params(model_id, split, version, distractors), "k": k}).mappings()
    return [Hit(**row) for row in rows]


def _scope(split: str, version: str | None) -> str:
    return f"split {split}" + (f" {version}" if version else "")


def split_counts(conn, model_id: int, split: str, version: str | None):
    """The images, queries and images embedded by the model MODEL_ID of SPLIT/VERSION
    (geoloc/sql/evaluate/protocol_counts.sql)."""
    return conn.execute(sqlfiles.text("evaluate/protocol_counts.sql"), _protocol_params(model_id, split, version)).one()


def require_embedded(row, counts, split: str, version: str | None, why: str = "") -> None:
    """InputError when ROW's model lacks an embedding of any image of SPLIT/VERSION (COUNTS: its
    split_counts), WHY appended to the message."""
    if counts.embedded < counts.images:
        scope = f"--split {split}" + (f" --version {version}" if version else "")
        raise InputError(f"model '{row.name}' lacks embeddings for {counts.images - counts.embedded} of "
                         f"{counts.images} images of {_scope(split, version)}{why}",
                         hint=f"run 'geoloc embed --model {row.name} {scope}'")


def _check_embedded(conn, row, split: str, version: str | None, distractors: tuple[str, ...]) -> int:
    """The number of database images of the protocol (the split's and its distractors'); errors when a
    split has no images or the model lacks an embedding of any of them."""
    database = 0
    for s in (split, *distractors):
        counts = split_counts(conn, row.id, s, version)
        if counts.images == 0:
            what = "has no images" if s == split else "has no images to add as distractors"
            raise NotFound(f"{_scope(s, version)} {what}", hint="import them with 'geoloc ingest images DIR'")
        require_embedded(row, counts, s, version)
        database += counts.images - (counts.queries if s == split else 0)
    return database


def _report(row, method: str, database: int, k: int, consensus_k: int, hits: list[Hit]) -> MethodReport:
    outs = outcomes(hits, consensus_k)
    return MethodReport(row.name, row.id, method, len(outs), database,
                        recall_at([o.first_correct_rank for o in outs], [n for n in RECALL_AT if n <= k]),
                        error_summary(o.top1_error_m for o in outs),
                        error_summary(o.consensus_error_m for o in outs), outcomes=outs)


def _model_hits(conn, model_name: str, split: str, version: str | None, k: int, distractors: tuple[str, ...]):
    """(model row, database images, protocol hits) of a registered model whose embeddings exist."""
    from ..db.models import get_model

    row = get_model(conn, model_name)
    database = _check_embedded(conn, row, split, version, distractors)
    return row, database, protocol_hits(conn, row.id, row.dim, split, version, k, distractors)


def evaluate_model(conn, model_name: str, split: str, version: str | None = None, k: int = DEFAULT_K,
                   consensus_k: int = DEFAULT_CONSENSUS_K, method: str = "model", store: bool = True,
                   distractors: tuple[str, ...] = ()) -> MethodReport:
    """Evaluate one registered model whose embeddings of the split (and of the DISTRACTORS splits, whose
    images join the database) exist, inside the caller's transaction."""
    row, database, hits = _model_hits(conn, model_name, split, version, k, distractors)
    report = _report(row, method, database, k, consensus_k, hits)
    if store:
        report.run_id = store_run(conn, report, split, version, k, consensus_k, distractors=distractors)
    return report


def store_run(conn, report: MethodReport, split: str, version: str | None, k: int, consensus_k: int,
              search: str = "exact", extra: dict | None = None, distractors: tuple[str, ...] = ()) -> int:
    """Store REPORT as one eval_runs row (its figures, k, how it searched and the distractor splits in
    metrics) and one eval_predictions row per query; the run's id."""
    metrics = {**report.metrics(), "k": k, "consensus_k": consensus_k, "correct_within_m": CORRECT_M,
               "search": search, **({"distractors": list(distractors)} if distractors else {}), **(extra or {})}
    run_id = insert_run(conn, report.model_id, report.method, split, version, metrics)
    outs = report.outcomes
    conn.execute(sqlfiles.text("evaluate/insert_predictions.sql"), {
        "run_id": run_id,
        "query_image_id": [o.query_image_id for o in outs],
        "top1_location_id": [o.top1_location_id for o in outs],
        "top1_error_m": [o.top1_error_m for o in outs],
        "consensus_location_id": [o.consensus_location_id for o in outs],
        "consensus_error_m": [o.consensus_error_m for o in outs],
        "first_correct_rank": [o.first_correct_rank for o in outs],
    })
    return run_id


def insert_run(conn, model_id: int | None, method: str, split: str, version: str | None, metrics: dict) -> int:
    """One eval_runs row (geoloc/sql/evaluate/insert_run.sql); its id. Non-finite figures are stored as null."""
    return conn.execute(sqlfiles.text("evaluate/insert_run.sql"), {
        "model_id": model_id, "method": method, "split": split, "version": version,
        "metrics": json.dumps(_json_safe(metrics))}).scalar_one()


def _json_safe(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------- post-processing (numpy)

@dataclass
class ProtocolVectors:
    """The protocol's images of one split and their embeddings (rows ordered by image id)."""

    ids: np.ndarray
    location_ids: np.ndarray
    is_query: np.ndarray  # bool
    lat: np.ndarray
    lng: np.ndarray
    xy: np.ndarray  # (N, 2) metres in EPSG:3006
    vectors: np.ndarray  # (N, D)


def protocol_vectors(conn, model_id: int, dim: int, split: str, version: str | None,
                     distractors: tuple[str, ...] = ()) -> ProtocolVectors:
    """geoloc/sql/evaluate/protocol_vectors.sql read in one statement."""
    stmt = sqlfiles.text("evaluate/protocol_vectors.sql").columns(embedding=VECTOR())
    rows = conn.execute(stmt, _protocol_params(model_id, split, version, distractors)).all()
    col = lambda name, dtype: np.array([getattr(r, name) for r in rows], dtype=dtype)  # noqa: E731
    return ProtocolVectors(col("id", np.int64), col("location_id", np.int64), col("is_query", bool),
                           col("lat", np.float64), col("lng", np.float64),
                           np.column_stack([col("x", np.float64), col("y", np.float64)]).reshape(-1, 2),
                           np.array([r.embedding for r in rows], dtype=np.float32).reshape(len(rows), dim))


def split_embeddings(conn, model_id: int, dim: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The model's embeddings of every image of SPLIT (all versions), one row each, and the place of
    each row (geoloc.model.sampler.places_of): what a whitening is fitted on."""
    from ..model.sampler import places_of

    stmt = sqlfiles.text("evaluate/split_embeddings.sql").columns(embedding=VECTOR())
    rows = conn.execute(stmt, {"model_id": model_id, "split": split}).all()
    vectors = np.array([r.embedding for r in rows], dtype=np.float32).reshape(len(rows), dim)
    return vectors, places_of([r.location_id for r in rows], [r.heading for r in rows])


def fit_split_whitening(model_name: str, split: str, vectors: np.ndarray, places: np.ndarray,
                        dims: int | None, shrinkage: float) -> post.Whitening:
    """The whitening fitted on MODEL_NAME's embeddings of SPLIT and their places (split_embeddings), as
    `geoloc evaluate --post whiten` and `geoloc models whiten` fit it; InputError when they cannot be."""
    try:
        return post.fit_whitening(vectors, dims, shrinkage, places)
    except ValueError as exc:
        raise InputError(f"model '{model_name}': cannot whiten its embeddings of split {split} ({exc})") from None


def numpy_hits(pv: ProtocolVectors, queries: np.ndarray, database: np.ndarray, k: int) -> list[Hit]:
    """The k nearest database rows of every query row by cosine distance, exactly (brute force, float64),
    as Hits like knn_all.sql's: ties by image id, errors in EPSG:3006 metres."""
    q_idx, d_idx = np.where(pv.is_query)[0], np.where(~pv.is_query)[0]
    queries, database = post.normalise(queries), post.normalise(database)
    hits = []
    for start in range(0, len(q_idx), post.CHUNK_ROWS):
        sims = queries[start:start + post.CHUNK_ROWS] @ database.T
        nn = post.top_n(sims, k)
        for row, qi in enumerate(q_idx[start:start + post.CHUNK_ROWS]):
            for rank, j in enumerate(nn[row], start=1):
                di = d_idx[j]
                hits.append(Hit(int(pv.ids[qi]), int(pv.location_ids[qi]), rank, int(pv.ids[di]),
                                int(pv.location_ids[di]), float(1.0 - sims[row, j]),
                                float(np.hypot(*(pv.xy[qi] - pv.xy[di]))), float(pv.lat[di]), float(pv.lng[di])))
    return hits


def post_methods(post_steps: Iterable[str]) -> list[tuple[str, ...]]:
    """The runs `--post` asks for: each step alone, then all of them combined (when more than one);
    'all' names every step. Steps in geoloc.retrieval.postprocess.METHODS order."""
    given = list(post_steps)
    unknown = [p for p in given if p != "all" and p not in post.METHODS]
    if unknown:
        raise InputError(f"--post '{unknown[0]}': must be one of {', '.join(post.METHODS)}, all")
    steps = tuple(m for m in post.METHODS if m in given or "all" in given)
    return [(m,) for m in steps] + ([steps] if len(steps) > 1 else [])


def method_name(steps: tuple[str, ...]) -> str:
    """The eval_runs method of a post-processed run, e.g. 'model+whiten+qe' (the model is its model_id)."""
    return "+".join(("model", *steps))


def evaluate_post(conn, model_name: str, runs: list[tuple[str, ...]], split: str, version: str | None = None,
                  k: int = DEFAULT_K, consensus_k: int = DEFAULT_CONSENSUS_K,
                  params: post.PostParams = post.PostParams(), fit_split: str = WHITEN_FIT_SPLIT,
                  store: bool = True, distractors: tuple[str, ...] = ()) -> list[MethodReport]:
    """The model post-processed as each of RUNS (tuples of post-processing steps) says, on the same
    queries and database as evaluate_model, by exact search in numpy over the stored embeddings; the
    whitening is fitted on the model's embeddings of FIT_SPLIT. Inside the caller's transaction."""
    from ..db.models import get_model

    row = get_model(conn, model_name)
    pv = protocol_vectors(conn, row.id, row.dim, split, version, distractors)
    whitening, fit = None, None
    if any("whiten" in steps for steps in runs):
        train, places = split_embeddings(conn, row.id, row.dim, fit_split)
        if len(train) < 2:
            raise InputError(f"model '{model_name}' has {len(train)} embeddings of split {fit_split}: the "
                             f"whitening is fitted on them and needs at least 2",
                             hint=f"run 'geoloc embed --model {model_name} --split {fit_split}'")
        whitening = fit_split_whitening(model_name, fit_split, train, places, params.whiten_dims,
                                        params.whiten_shrinkage)
        fit = {"split": fit_split, "vectors": len(train), "dims": whitening.dims, "method": post.WHITEN_METHOD}
    queries, database = pv.vectors[pv.is_query], pv.vectors[~pv.is_query]
    reports = []
    for steps in runs:
        q, d = post.postprocess(steps, queries, database, params, whitening)
        report = _report(row, method_name(steps), len(database), k, consensus_k, numpy_hits(pv, q, d, k))
        if store:
            extra = {"post": {"steps": list(steps), **params.to_json(),
                              **({"whitening_fit": fit} if "whiten" in steps else {})}}
            report.run_id = store_run(conn, report, split, version, k, consensus_k, "exact (numpy)", extra,
                                      distractors)
        reports.append(report)
    return reports


# ------------------------------------------------------------------------- re-ranking (geometry)

def image_files(conn, image_ids: Iterable[int]) -> dict[int, Path]:
    """The file of every image of IMAGE_IDS (geoloc/sql/evaluate/image_files.sql)."""
    rows = conn.execute(sqlfiles.text("evaluate/image_files.sql"), {"ids": sorted(set(image_ids))}).all()
    return {r.id: image_file(r) for r in rows}


def rerank_hits(hits: list[Hit], files: dict[int, Path], params: RerankParams, progress: bool = False,
                verifier: Verifier | None = None) -> list[Hit]:
    """HITS with every query's first PARAMS.top re-ordered by their geometry with the query image
    (geoloc.retrieval.rerank) and renumbered; FILES: the file of every query and hit image; VERIFIER:
    whose features to use and keep (a new one when None)."""
    from tqdm import tqdm

    verifier, out = verifier if verifier is not None else Verifier(), []
    for qid, hs in tqdm(by_query(hits).items(), desc="re-ranking", unit="query", disable=not progress):
        ranked = rerank_candidates(files[qid], hs, lambda h: files[h.image_id], lambda h: 1.0 - h.distance, params,
                                   verifier)
        out += [replace(h, rank=rank) for rank, (h, _) in enumerate(ranked, start=1)]
    return out


def evaluate_rerank(model_name: str, split: str, version: str | None = None, k: int = DEFAULT_K,
                    consensus_k: int = DEFAULT_CONSENSUS_K, params: RerankParams = RerankParams(),
                    distractors: tuple[str, ...] = (), progress: bool = False,
                    method: str = "model", verifier: Verifier | None = None) -> tuple[MethodReport, MethodReport]:
    """The model's protocol hits (as evaluate_model finds them) as they are and re-ranked by geometry
    (rerank_hits): two reports (METHOD and 'model+rerank') of one exact search, not stored. The hits and
    files are read in one transaction and the images compared after it."""
    with begin() as conn:
        row, database, hits = _model_hits(conn, model_name, split, version, k, distractors)
        files = image_files(conn, [h.image_id for h in hits] + [h.query_image_id for h in hits])
    for path in files.values():  # a missing file is named before minutes of work, not after
        check_file(path)
    reranked = rerank_hits(hits, files, params, progress, verifier)
    return (_report(row, method, database, k, consensus_k, hits),
            _report(row, method_name(("rerank",)), database, k, consensus_k, reranked))


def _check_params(params: post.PostParams) -> None:
    for name, value, rule in params.problems():
        raise InputError(f"--{name.replace('_', '-')} {value}: {rule}")


def check_options(model: str | None, baseline: str | None, split: str, version: str | None, k: int,
                  consensus_k: int, post_steps: Iterable[str] = (), params: post.PostParams = post.PostParams(),
                  distractors: tuple[str, ...] = (), rerank: RerankParams | None = None) -> list[tuple[str, ...]]:
    """InputError naming the first of evaluate's options that is out of range or lacks another; the
    post-processed runs asked for (post_methods) otherwise."""
    _check_split(split, version, distractors)
    if model is None and baseline is None:
        raise InputError("name a --model to evaluate (or --baseline thumbnail alone)")
    if not 1 <= k <= 1000:
        raise InputError(f"-k {k}: must be between 1 and 1000")
    if not 1 <= consensus_k <= k:
        raise InputError(f"--consensus-k {consensus_k}: must be between 1 and -k ({k})")
    runs = post_methods(post_steps)
    if runs and model is None:
        raise InputError("--post needs a --model to post-process")
    _check_params(params)
    check_rerank(rerank)
    if rerank is not None:
        if model is None:
            raise InputError("--rerank needs a --model whose neighbours it re-ranks")
        if rerank.top > k:
            raise InputError(f"--rerank-top {rerank.top}: must be at most -k ({k}), the neighbours retrieved")
    return runs


def evaluate(model: str | None = None, baseline: str | None = None, split: str = DEFAULT_SPLIT,
             version: str | None = None, k: int = DEFAULT_K, consensus_k: int = DEFAULT_CONSENSUS_K,
             store: bool = True, progress: bool = False,
             post_steps: Iterable[str] = (), params: post.PostParams = post.PostParams(),
             distractors: Iterable[str] = (), rerank: RerankParams | None = None,
             verifier: Verifier | None = None) -> EvalReport:
    """Evaluate MODEL and the thumbnail baseline (or only BASELINE) on SPLIT/VERSION; store the runs.

    The baseline's thumbnails of the split are computed on first use (seconds); the model's embeddings
    must exist already (`geoloc embed`), since computing them is the model's expensive part.
    POST_STEPS (geoloc.retrieval.postprocess.METHODS, or 'all') add the model post-processed by each
    step and by all of them combined, each its own run (method 'model+STEP...'), next to the raw model.
    DISTRACTORS (splits) add every image of theirs to the database of every method, none as a query.
    RERANK adds the model's hits re-ranked by geometry with the query images (evaluate_rerank), its
    own run (method 'model+rerank'); it reads the image files and takes about half a second per query.
    VERIFIER: the rerank.Verifier whose features it uses (and keeps), a new one when None.
    """
    from .embed import embed_images

    distractors = tuple(dict.fromkeys(distractors))  # each split once, in the order given
    runs = check_options(model, baseline, split, version, k, consensus_k, post_steps, params, distractors, rerank)
    baseline_name = baseline_model_name(baseline or "thumbnail")
    if model is not None:
        with begin() as conn:  # an unknown model fails before any baseline work
            from ..db.models import get_model

            get_model(conn, model)
    for s in (split, *distractors):
        embed_images(baseline_name, split=s, version=version, progress=progress)
    method = "baseline" if model == THUMBNAIL_MODEL else "model"
    plain = reranked = None
    if rerank is not None:  # the model's plain run comes from the same search as its re-ranked one
        plain, reranked = evaluate_rerank(model, split, version, k, consensus_k, rerank, distractors, progress,
                                          method, verifier)
    reports = []
    with begin() as conn:
        if model is not None:
            if plain is None:
                reports.append(evaluate_model(conn, model, split, version, k, consensus_k, method, store,
                                              distractors))
            else:
                if store:
                    plain.run_id = store_run(conn, plain, split, version, k, consensus_k, distractors=distractors)
                reports.append(plain)
            if runs:
                reports += evaluate_post(conn, model, runs, split, version, k, consensus_k, params, store=store,
                                         distractors=distractors)
            if reranked is not None:
                if store:
                    reranked.run_id = store_run(conn, reranked, split, version, k, consensus_k,
                                                extra={"rerank": rerank.to_json()}, distractors=distractors)
                reports.append(reranked)
        if model != baseline_name:
            reports.append(evaluate_model(conn, baseline_name, split, version, k, consensus_k, "baseline", store,
                                          distractors))
    return EvalReport(split, version, k, consensus_k, "exact", reports, params.to_json() if runs else None,
                      distractors, rerank.to_json() if rerank is not None else None)


def report_rows(report: EvalReport) -> list[tuple[str, list[str]]]:
    """The side-by-side table the CLI prints: (label, one cell per method)."""
    rows = [("", [f"{m.method} {m.model}" for m in report.methods])]
    for n in report.methods[0].recall:
        rows.append((f"Recall@{n}", [f"{m.recall[n]:.3f}" for m in report.methods]))
    for key, label in (("top1_error_m", "top-1 error"), ("consensus_error_m", "consensus error")):
        for stat in ("median", "p75", "p90", "mean"):
            rows.append((f"{label} {stat} (m)", [f"{getattr(m, key)[stat]:.0f}" for m in report.methods]))
    return rows
