"""The main job end to end on the real Stockholm data: database, collection, images, training,
embeddings, evaluation and a report. Every stage first checks what the database already holds, so a
rerun only redoes what is missing (or what --retrain / --reimport ask for).

With --cells the demo also builds the geo-cell partition of the training images, trains its model with
one cell head per level (as `geoloc train --cells`) and runs `geoloc evaluate --cells`; the report
shows the geo-cells table (cells-only vs retrieval-only vs hybrid vs thumbnails) whenever the
database holds such an evaluation, read back from eval_runs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import sqlalchemy as sa

from . import config, htmlsafe
from .db import sqlfiles
from .db.engine import begin
from .errors import InputError
from .imagefile import image_file

AREA = "stockholm"
DEFAULT_MODEL = "stockholm-mobilenetv3small"
DEFAULT_CELLS_MODEL = "stockholm-mobilenetv3small-cells"  # the model --cells trains (with cell heads)
CELLS_PARTITION = "stockholm"
DEFAULT_TRAIN_MINUTES = 60.0  # vs 30: val Recall@1/5/10 +0.4/+2.7/+3.1 points (benchmarks/README.md); demo ~64 min
EVAL_SPLIT, EVAL_VERSION = "test", "v1"
NEEDED = ("Stockholm.geojson", "buffers", "images")


@dataclass
class StageTime:
    name: str
    seconds: float
    detail: str


@dataclass
class DemoResult:
    stages: list[StageTime] = field(default_factory=list)
    report_md: Path | None = None
    report_html: Path | None = None
    evaluation: dict | None = None


def check_data(data: Path) -> Path:
    """The data folder, or InputError saying exactly what is missing and where it comes from."""
    data = Path(data).expanduser()
    missing = [name for name in NEEDED if not (data / name).exists()]
    if missing:
        raise InputError(
            f"{data}: the Stockholm data is missing ({', '.join(missing)} not found)",
            hint="put the shared data set at ../shared/data/stockholm beside the repository "
                 "(Stockholm.geojson, buffers/new_order_buffer_*.csv, images/Cropped_*), "
                 "or pass --data DIR / set GEOLOC_SHARED_DATA")
    return data


def demo(data: Path | None = None, train_minutes: float = DEFAULT_TRAIN_MINUTES, model: str | None = None,
         report_dir: Path | None = None, retrain: bool = False, reimport: bool = False, cells: bool = False,
         echo: Callable[[str], None] = print) -> DemoResult:
    """Run (or continue) the whole Stockholm pipeline and write the report; returns stage timings.

    MODEL defaults to DEFAULT_MODEL, or DEFAULT_CELLS_MODEL with CELLS (geo-cells: partition, cell heads
    and the cells evaluation as well).
    """
    model = model or (DEFAULT_CELLS_MODEL if cells else DEFAULT_MODEL)
    data = check_data(data or config.shared_data_dir())
    if train_minutes <= 0:
        raise InputError(f"--train-minutes {train_minutes:g}: must be positive")
    report_dir = Path(report_dir or config.data_dir() / "reports" / "demo")
    result = DemoResult()

    @contextmanager
    def stage(name: str) -> Iterator[list[str]]:
        echo(f"== {name}")
        notes: list[str] = []
        start = time.perf_counter()
        yield notes
        seconds = time.perf_counter() - start
        result.stages.append(StageTime(name, seconds, "; ".join(notes)))
        echo(f"   {'; '.join(notes)} ({seconds:.1f} s)")

    with stage("database") as notes:
        from .db import admin

        notes.extend(line for line in admin.up() if not line.startswith("ready"))
    with stage("area and 10 m grid") as notes:
        notes.append(_area_and_grid(data, reimport))
    with stage("locations and buffer selection") as notes:
        notes.extend(_locations_and_buffers(data))
    with stage("images") as notes:
        notes.append(_images(data, reimport))
    if cells:
        with stage("geo-cell partition") as notes:
            notes.append(_partition())
    with stage("training") as notes:
        notes.append(_train(model, train_minutes, retrain, CELLS_PARTITION if cells else None))
    with stage("embeddings and index") as notes:
        notes.append(_embed(model))
    with stage("evaluation") as notes:
        report = _evaluate(model)
        result.evaluation = report.to_json()
        notes.append(_recall_line(report))
    if cells:
        with stage("geo-cells evaluation") as notes:
            notes.append(_evaluate_cells(model))
    with stage("report") as notes:
        result.report_md, result.report_html = write_report(report_dir, model, report, result.stages)
        notes.append(f"wrote {result.report_html}")
    return result


def _scalar(sql_file: str, /, **params):
    """The one value sql/SQL_FILE returns (None when it returns no row)."""
    with begin() as conn:
        return conn.execute(sqlfiles.text(sql_file), params).scalar()


def _area_and_grid(data: Path, reimport: bool) -> str:
    """Load the area (with --reimport: give it the file's polygon again, keeping its grid points and
    paid metadata answers) and its 10 m grid (only the missing points are added)."""
    from .collect.area import ingest_area
    from .collect.grid import DEFAULT_SPACING, ingest_grid

    area_id = _scalar("area/exists.sql", name=AREA)
    have_area = area_id is not None
    notes = []
    if not have_area or reimport:
        res = ingest_area(data / "Stockholm.geojson", AREA, replace=bool(have_area))
        if res.replaced:
            notes.append(f"area replaced: {res.replacement_lines()[0]}")
    points = _scalar("grid/count.sql", area_id=area_id, spacing=DEFAULT_SPACING) if have_area else 0
    if points and not reimport:
        return f"area and {points:,} grid points already stored"
    grid = ingest_grid(AREA, DEFAULT_SPACING)
    return "; ".join([*notes, f"{grid.total:,} grid points ({grid.added:,} new) in {grid.seconds:.1f} s"])


def _locations_and_buffers(data: Path) -> list[str]:
    from .collect.buffers import ingest_buffers
    from .collect.locations import ingest_locations

    loc = ingest_locations([data / "buffers"])
    lines = [f"{loc.rows:,} CSV locations ({loc.locations_added:,} new)"]
    # exact circles (ST_DWithin), then the original's 64-sided buffer polygons (quad_segs 16)
    for quad_segs, shape in ((0, "exact circles"), (16, "original polygons")):
        sel = ingest_buffers(quad_segs=quad_segs)
        same = ", ".join(f"{b.buffer_m:g} m {b.csv_equal}/{b.csv} (J {b.jaccard or 0:.3f})" for b in sel.buffers)
        lines.append(f"{shape}: {sel.candidates:,} panoramas in {sel.select_seconds:.2f} s, same as CSV: {same}")
    return lines


def _images(data: Path, reimport: bool) -> str:
    from .imagery.importer import ingest_images

    have = _scalar("demo/image_count.sql")
    if have and not reimport:
        return f"{have:,} images already imported"
    summary = ingest_images(data / "images", progress=True)
    per = ", ".join(f"{s} {v}: {n:,}" for (s, v), n in sorted(summary.per_split.items(), key=str))
    return f"{summary.imported:,} imported, {summary.skipped:,} skipped, {summary.failed:,} failed ({per})"


def _partition() -> str:
    """The geo-cell partition CELLS_PARTITION of the training images (default settings), unless built."""
    from .cells import partition as P

    known = {r["name"]: r for r in P.list_partitions()}
    if CELLS_PARTITION in known:
        return f"partition '{CELLS_PARTITION}' already built (cells per level {known[CELLS_PARTITION]['cells']})"
    s = P.build_partition(CELLS_PARTITION)
    return (f"partition '{s.name}' from {s.images:,} {s.split} images: cells per level "
            f"{[lv.cells for lv in s.levels]}")


def _train(model: str, minutes: float, retrain: bool, cells: str | None = None) -> str:
    """Train MODEL unless it is ready (with CELLS: one cell head per level of that partition, as
    `geoloc train --cells`). --retrain builds the new model under a temporary name and swaps
    it in only once it is ready, in one transaction: until then (or if that training fails) the old
    model, its embeddings and its evaluations stay as they are. An interrupted run is resumed."""
    from .db import models as registry
    from .model.train import TrainConfig, train
    from .model.train_progress import ProgressView, choice_lines

    def status_of(name: str) -> str | None:
        with begin() as conn:
            row = conn.execute(sqlfiles.text("model/exists.sql"), {"name": name}).first()
        return row.status if row else None

    def train_or_resume(name: str):
        status = status_of(name)
        if status == "ready":
            return registry.get_model(None, name)
        view = ProgressView()
        try:
            return train(name, None if status else TrainConfig(cells=cells), resume=status is not None,
                         max_minutes=minutes, progress=view)
        finally:
            view.close()

    status = status_of(model)
    if status == "ready" and not retrain:
        return f"model '{model}' already trained (use --retrain to train again)"
    if status is None or not retrain:
        row = train_or_resume(model)
    else:
        successor = f"{model[:56]}.retrain"  # a valid model name, at most 64 characters
        train_or_resume(successor)
        with begin() as conn:
            row = registry.replace_model(conn, model, successor)
    best = max((h.get("val_recall@1", 0) or 0 for h in row.history), default=0)
    choices = choice_lines(row.hyperparams)
    if not (row.hyperparams or {}).get("whitening_check"):
        choices.append("whitening: off")
    m = row.metrics or {}
    rate = f" at {m['images_per_s']:.0f} img/s" if m.get("images_per_s") else ""  # none timed in a 1-step run
    speed = f" ({m['steps']:,} steps{rate})" if m.get("steps") else ""
    return (f"model '{model}' trained in {row.train_seconds / 60:.1f} min{speed}, best val Recall@1 {best:.3f}"
            + "".join(f"; {c}" for c in choices))


def _embed(model: str) -> str:
    from .retrieval.embed import embed_images

    s = embed_images(model, progress=True)
    index = f"index {s.index} built in {s.index_seconds:.1f} s" if s.index_built else f"index {s.index}"
    if s.index_spilled:
        index += f" ({s.index_spilled})"
    return (f"{s.embedded:,} embedded ({s.already:,} before) at {s.images_per_s:.0f} img/s; {index}")


def _evaluate(model: str):
    from .retrieval.evaluate import evaluate

    return evaluate(model=model, split=EVAL_SPLIT, version=EVAL_VERSION, progress=True)


def _evaluate_cells(model: str, split: str = EVAL_SPLIT, version: str | None = EVAL_VERSION) -> str:
    """`geoloc evaluate --cells` for MODEL on SPLIT/VERSION, unless its cells run is stored already."""
    from .retrieval.evaluate import error_summary
    from .retrieval.hybrid_eval import evaluate_cells

    table = cells_table(model, split, version)
    if table is not None and table["model"] == model:
        return f"cells evaluation of '{model}' already stored (run {table['runs'][0]})"
    rep = evaluate_cells(model, split=split, version=version, progress=True)
    return "; ".join(f"{r.method}: median error {error_summary(r.errors)['median']:,.0f} m" for r in rep.rows)


def cells_table(model: str | None = None, split: str = EVAL_SPLIT, version: str | None = EVAL_VERSION,
                url: str | None = None) -> dict | None:
    """The geo-cells table from eval_runs (geoloc/sql/cells/eval_table.sql): cells-only, retrieval-only, hybrid
    and the thumbnail baseline of the newest cells evaluation on SPLIT/VERSION (MODEL's first); None
    when there is none. Keys: model, runs, queries, header, body (label, one text per method)."""
    from .retrieval.hybrid_eval import WITHIN_M

    with begin(url) as conn:
        rows = conn.execute(sqlfiles.text("cells/eval_table.sql"),
                            {"split": split, "version": version, "model": model,
                             "within_m": [float(m) for m in WITHIN_M]}).all()
    if not rows:
        return None

    def title(r) -> str:
        if r.method == "cells":
            return f"cells-only ({r.model})"
        if r.method == "model":
            return f"retrieval-only ({r.model})"
        if r.method == "hybrid":
            level = "the finest level" if r.cell_level is None else f"level {r.cell_level}"
            return f"hybrid, top {r.top_cells} cells of {level} ({r.model})"
        return "16x16 thumbnails"

    def pct(v) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    body = []
    for i, m in enumerate(WITHIN_M):
        label = f"within {m / 1000:g} km" if m >= 1000 else f"within {m} m"
        body.append((label, [pct(r.within[i]) if r.within else "-" for r in rows]))
    body.append(("median error", ["-" if r.median_m is None else f"{r.median_m:,.0f} m" for r in rows]))
    body.append(("Recall@1 / @5", ["-" if r.recall_1 is None else f"{r.recall_1:.3f} / {r.recall_5:.3f}"
                                   for r in rows]))
    body.append(("queries", [f"{r.queries:,}" for r in rows]))
    body.append(("eval run", [str(r.run_id) for r in rows]))
    return {"model": rows[0].model, "runs": [r.run_id for r in rows], "queries": rows[0].queries,
            "header": [title(r) for r in rows], "body": body}


def _recall_line(report) -> str:
    return "; ".join(f"{m.method} {m.model}: R@1 {m.recall[1]:.3f} R@5 {m.recall[5]:.3f} R@10 {m.recall[10]:.3f}"
                     for m in report.methods)


def write_report(out: Path, model: str, report, stages: list[StageTime], area: str = AREA,
                 url: str | None = None) -> tuple[Path, Path]:
    """report.md and report.html (Jinja2 templates, every value escaped for its format): recall table,
    the geo-cells table when the database holds a cells evaluation (cells_table), neighbours picture,
    map, stage timings, and how to connect (the database URL without its password)."""
    from .retrieval.evaluate import report_rows

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    picture, webmap = _examples(out, model)
    rows = report_rows(report)
    values = {"model": model, "area": area, "split": EVAL_SPLIT, "version": EVAL_VERSION,
              "header": rows[0][1], "body": rows[1:], "picture": picture.name, "webmap": webmap.name,
              "stages": stages, "url": public_url(url), "cells": cells_table(model, url=url)}
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(htmlsafe.render("demo_report.md", **values))
    html_path.write_text(htmlsafe.render("demo_report.html", **values))
    (out / "evaluation.json").write_text(json.dumps(report.to_json(), indent=2, default=str))
    return md_path, html_path


def public_url(url: str | None = None) -> str:
    """The database URL (default: the configured one, libpq style) with no password in it."""
    from sqlalchemy.engine import URL, make_url

    from .db.admin import url as db_url

    raw = url or db_url()
    try:
        parsed = make_url(raw)
    except (sa.exc.ArgumentError, ValueError):
        return config.redact(raw)
    query = {k: v for k, v in parsed.query.items() if k != "password"}
    bare = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database, query)
    return config.redact(bare.render_as_string(hide_password=False))


def _examples(out: Path, model: str, n: int = 4, k: int = 5) -> tuple[Path, Path]:
    """Neighbours picture and map for a few test queries, using their stored embeddings (for a model
    with cell heads the map also draws each query's most probable cells)."""
    from .db.models import get_model
    from .retrieval.consensus import consensus
    from .retrieval.hybrid import HybridResult, knn_cells, model_has_cells
    from .retrieval.plots import plot_results
    from .retrieval.search import QueryResult, knn, set_search_options
    from .retrieval.vectors import with_vector_columns

    results = []
    with begin() as conn:
        m = get_model(conn, model)
        queries = conn.execute(with_vector_columns(sqlfiles.text("demo/example_queries.sql"), "embedding"),
                               {"model_id": m.id, "split": EVAL_SPLIT, "version": EVAL_VERSION, "n": n}).all()
        set_search_options(conn, 100)
        with_cells = model_has_cells(conn, m.id)
        for q in queries:
            if with_cells:
                cells, found = knn_cells(conn, m.id, m.dim, q.embedding, k=k + 1, split=EVAL_SPLIT,
                                         version=EVAL_VERSION)
            else:
                found = knn(conn, m.id, m.dim, q.embedding, k + 1, split=EVAL_SPLIT, version=EVAL_VERSION)
            hits = [h for h in found if h.image_id != q.id][:k]
            hits = [dataclasses.replace(h, rank=i + 1) for i, h in enumerate(hits)]  # the query itself was #1
            shown = (image_file(q), hits, hits[0] if hits else None, consensus(hits))
            results.append(HybridResult(*shown, cells=cells) if with_cells else QueryResult(*shown))
    from .retrieval.webmap import write_map

    title = f"geoloc demo: model {model}, {EVAL_SPLIT} {EVAL_VERSION} queries"
    return plot_results(results, out / "neighbours.png"), write_map(results, out / "map.html", title=title)
