"""`geoloc evaluate`: Recall@N and position errors of a model next to the thumbnail baseline."""

from __future__ import annotations

import json

import click

from ..cells import defaults as cell_defaults
from ..errors import InputError
from ..retrieval import postprocess as post
from ..retrieval.evaluate import DEFAULT_CONSENSUS_K, DEFAULT_K, DEFAULT_SPLIT, WHITEN_FIT_SPLIT
from ..splits import SPLITS
from .rerank_options import rerank_options, rerank_params

COMMANDS = ["evaluate"]


@click.command()
@click.option("--model", help="Registered model to evaluate (its embeddings of the split must exist).")
@click.option("--baseline", type=click.Choice(["thumbnail"]),
              help="Evaluate only this non-learned baseline (with --model it is always shown beside it).")
@click.option("--split", type=click.Choice(SPLITS), default=DEFAULT_SPLIT, show_default=True)
@click.option("--version", help="Scraping version of the split (e.g. v1); all versions when omitted.")
@click.option("--distractors", multiple=True, type=click.Choice(SPLITS),
              help="Add every image of this split (and version) to the database, none as a query "
                   "(repeatable): the same queries in a larger database. The model's embeddings of it must exist.")
@click.option("-k", "k", type=int, default=DEFAULT_K, show_default=True, help="Neighbours retrieved per query.")
@click.option("--consensus-k", type=int, default=DEFAULT_CONSENSUS_K, show_default=True,
              help="Neighbours that vote for the consensus position.")
@click.option("--cells", "cells", is_flag=True,
              help="Geo-cells table: cells-only vs retrieval-only vs hybrid vs thumbnails (model with cell heads).")
@click.option("--top-cells", type=int, default=cell_defaults.EVAL_TOP_CELLS, show_default=True,
              help="With --cells: the hybrid searches the N most probable cells of --cell-level.")
@click.option("--cell-level", type=int, default=cell_defaults.EVAL_CELL_LEVEL, show_default=True,
              help="With --cells: the partition level (0 = coarsest) whose cells restrict the hybrid.")
@click.option("--post", "post_steps", multiple=True, type=click.Choice([*post.METHODS, "all"]),
              help=f"Also evaluate the model post-processed (repeatable): whiten = whitening learned on the "
                   f"{WHITEN_FIT_SPLIT} split's embeddings and places, qe = alpha query expansion, dba = database-side "
                   "augmentation, all = the three; each alone and all given combined, exact search in numpy.")
@click.option("--alpha", type=float, default=post.DEFAULT_ALPHA, show_default=True,
              help="With --post qe/dba: neighbours weigh their similarity to this power.")
@click.option("--qe-n", type=int, default=post.DEFAULT_QE_N, show_default=True,
              help="With --post qe: database neighbours added to each query.")
@click.option("--dba-n", type=int, default=post.DEFAULT_DBA_N, show_default=True,
              help="With --post dba: neighbours averaged into each database vector.")
@click.option("--whiten-dims", type=int, default=post.DEFAULT_WHITEN_DIMS,
              help="With --post whiten: keep this many principal directions  [default: all]")
@click.option("--whiten-shrinkage", type=float, default=post.DEFAULT_WHITEN_SHRINKAGE, show_default=True,
              help="With --post whiten: added to every eigenvalue, as a share of their mean (0 = full whitening).")
@rerank_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def evaluate(model: str | None, baseline: str | None, split: str, version: str | None,
             distractors: tuple[str, ...], k: int, consensus_k: int, cells: bool, top_cells: int,
             cell_level: int | None, post_steps: tuple[str, ...], alpha: float, qe_n: int, dba_n: int,
             whiten_dims: int | None, whiten_shrinkage: float, rerank_on: bool, rerank_top: int,
             rerank_weight: float, as_json: bool) -> None:
    """Evaluate with the original protocol, next to the 16x16 thumbnail baseline.

    Per location and heading the newest image is the query, all other images of the split (and
    version) are the database; correct = a retrieved image within 25 m. Exact search in SQL. The run
    and each query's prediction are stored (QGIS: view v_eval_predictions).

    With --distractors, the images of other splits join the database (closer to a deployment, which
    searches every image it has): the same queries, more places to confuse them with.

    With --post, the model is also evaluated after learned whitening, query expansion and/or
    database-side augmentation, on the same queries and database (each its own stored run).

    With --rerank, the model's nearest images of every query are also re-ranked by how many SIFT
    matches one rigid scene explains (its own stored run, 'model+rerank'; reads the image files);
    with --cells, the hybrid's neighbours too ('hybrid+rerank').

    Example: geoloc evaluate --model mnv3-small --split test --version v1

    Example: geoloc evaluate --model mnv3-small --split val --post all

    Example: geoloc evaluate --model mnv3-small --split val --distractors test --distractors train

    Example: geoloc evaluate --model mnv3-small --split val --version v1 --rerank
    """
    rerank = rerank_params(rerank_on, rerank_top, rerank_weight)
    if cells:  # the geo-cells comparison (geoloc.retrieval.hybrid_eval)
        if post_steps:
            raise InputError("--post does not combine with --cells")
        if distractors:
            raise InputError("--distractors does not combine with --cells")
        from ..retrieval.hybrid_eval import evaluate_cells, report_rows as cell_rows

        rep = evaluate_cells(model, split=split, version=version, top_cells=top_cells, k=k, cell_level=cell_level,
                             progress=not as_json, rerank=rerank)
        if as_json:
            click.echo(json.dumps(rep.to_json(), indent=2))
            return
        scope = f"split {rep.split}" + (f" {rep.version}" if rep.version else "")
        click.echo(f"{scope}: {rep.queries} queries, {rep.database} database images; hybrid = neighbours "
                   f"inside the top {rep.top_cells} cells of level "
                   f"{'finest' if rep.cell_level is None else rep.cell_level}; errors of the top-1 prediction")
        _print_rerank(rep.rerank)
        _table(cell_rows(rep), len(rep.rows))
        click.echo("stored as eval run(s) " + ", ".join(str(r.run_id) for r in rep.rows if r.run_id is not None))
        return
    from ..retrieval.evaluate import evaluate as run_evaluate, report_rows

    params = post.PostParams(alpha=alpha, qe_n=qe_n, dba_n=dba_n, whiten_dims=whiten_dims,
                             whiten_shrinkage=whiten_shrinkage)
    report = run_evaluate(model, baseline, split=split, version=version, k=k, consensus_k=consensus_k,
                          progress=not as_json, post_steps=post_steps, params=params, distractors=distractors,
                          rerank=rerank)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    m0 = report.methods[0]
    scope = f"split {report.split}" + (f" {report.version}" if report.version else "")
    if report.distractors:
        scope += " + distractors " + ", ".join(report.distractors)
    click.echo(f"{scope}: {m0.queries} queries, {m0.database} database images; {report.search} search, "
               f"k={report.k}, consensus of {report.consensus_k}, correct = within 25 m")
    if report.post:
        click.echo("post-processing: " + ", ".join(f"{k}={v if v is not None else 'all'}"
                                                    for k, v in report.post.items()))
    _print_rerank(report.rerank)
    _table(report_rows(report), len(report.methods))
    runs = ", ".join(str(m.run_id) for m in report.methods if m.run_id is not None)
    if runs:
        click.echo(f"stored as eval run(s) {runs} (view v_eval_predictions)")


def _print_rerank(params: dict | None) -> None:
    if params:
        click.echo("re-ranking (SIFT + MAGSAC inliers): " + ", ".join(f"{k}={v}" for k, v in params.items()))


def _table(rows: list[tuple[str, list[str]]], n: int) -> None:
    width = max(len(label) for label, _ in rows)
    cols = [max(len(row[1][i]) for row in rows) for i in range(n)]
    for label, cells in rows:
        click.echo(f"{label:<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, cols)))
