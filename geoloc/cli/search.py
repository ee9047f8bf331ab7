"""`geoloc search`: where was this photo taken?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..months import iso_month
from ..retrieval.hybrid import DEFAULT_TOP_CELLS
from ..retrieval.search import DEFAULT_K, MAX_K
from ..splits import SPLITS
from .rerank_options import rerank_options, rerank_params

COMMANDS = ["search"]


def _print_result(res) -> None:
    click.echo(f"{res.image}:")
    reranked = any(n.inliers is not None for n in res.neighbours)
    inliers = f"  {'inliers':>7}" if reranked else ""
    click.echo(f"  {'rank':>4}  {'distance':>8}{inliers}  {'location':>8}  {'heading':>7}  {'month':7}  "
               f"{'lat':>10}  {'lng':>10}  image")
    for n in res.neighbours:
        month = iso_month(n.capture_month)
        inliers = f"  {'' if n.inliers is None else n.inliers:>7}" if reranked else ""
        click.echo(f"  {n.rank:>4}  {n.distance:>8.4f}{inliers}  {n.location_id:>8}  {n.heading:>7}  {month:7}  "
                   f"{n.lat:>10.6f}  {n.lng:>10.6f}  {n.file}")
    if res.best is None:
        click.echo("  no database image matches the filters")
        return
    b, c = res.best, res.consensus
    click.echo(f"  best match: location {b.location_id} at {b.lat:.6f}, {b.lng:.6f} (distance {b.distance:.4f})")
    click.echo(f"  consensus:  location {c.location_id} at {c.lat:.6f}, {c.lng:.6f} "
               f"(votes {c.votes:.3f} from {c.count} of {c.of} neighbours)")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", required=True, help="Registered model name (or thumbnail-16, the baseline).")
@click.option("-k", "k", type=int, default=DEFAULT_K, show_default=True,
              help=f"How many nearest images to return (1 to {MAX_K}).")
@click.option("--near", metavar="LAT,LNG", help="Only database images within --within metres of this point.")
@click.option("--within", "within_m", type=float, metavar="METRES", help="Radius for --near, in metres.")
@click.option("--area", help="Only database images inside this area (see 'geoloc ingest area').")
@click.option("--split", type=click.Choice(SPLITS), help="Only database images of this split.")
@click.option("--version", help="Only database images of this scraping version (e.g. v1).")
@click.option("--cells/--no-cells", "use_cells", default=None,
              help="Report the geo-cell probabilities of a model with cell heads (restrict with --top-cells) "
                   "[on when it has them].")
@click.option("--top-cells", type=int, default=DEFAULT_TOP_CELLS, show_default=True,
              help="With cells: neighbours only from the N most probable cells (0: anywhere).")
@click.option("--cell-level", type=int, help="With cells: the partition level whose cells restrict [the finest].")
@rerank_options
@click.option("--read-url", metavar="URL",
              help="Read from this server, e.g. a replica made by 'geoloc db replica' [GEOLOC_READ_DATABASE_URL].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), help="Write a PNG: query beside its neighbours.")
@click.option("--map", "map_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write an HTML map of the prediction, the neighbours and (with cells) the top cells.")
def search(images: tuple[Path, ...], model: str, k: int, near: str | None, within_m: float | None,
           area: str | None, split: str | None, version: str | None, use_cells: bool | None, top_cells: int,
           cell_level: int | None, rerank_on: bool, rerank_top: int, rerank_weight: float, read_url: str | None,
           as_json: bool, plot: Path | None, map_file: Path | None) -> None:
    """Find the k nearest database images of each photo and predict where it was taken.

    One SQL query per photo (geoloc/sql/search/knn.sql) returns the neighbours with their locations; the
    prediction is the best match's location and a consensus of the k neighbours (votes weighted by
    similarity).

    With --rerank the nearest --rerank-top images (with cells: those of the hybrid search) are
    re-ordered by their SIFT geometry with the photo before the k best are kept; the table then shows
    their inliers.

    \b
    Example: geoloc search photo.jpg --model mnv3-small -k 5 --near 59.3251,18.0711 --within 800
    Example: geoloc search photo.jpg --model mnv3-small --rerank
    """
    from ..retrieval import plots, webmap
    from ..retrieval.search import search as run_search

    if plot is not None:
        plots.check_path(plot)
    if map_file is not None:
        webmap.check_path(map_file)
    from ..retrieval import hybrid as cells_search

    rerank = rerank_params(rerank_on, rerank_top, rerank_weight)
    if use_cells or (use_cells is None and cells_search.has_cells(model, read_url)):
        results = cells_search.hybrid_search(list(images), model, k=k, top_cells=top_cells, cell_level=cell_level,
                                             near=near, within_m=within_m, area=area, split=split, version=version,
                                             read_url=read_url, rerank=rerank)
    else:
        results = run_search(list(images), model, k=k, near=near, within_m=within_m, area=area, split=split,
                             version=version, read_url=read_url, rerank=rerank)
    if plot is not None:
        plots.plot_results(results, plot)
    if map_file is not None:
        from ..config import normalise_url

        webmap.write_map(results, map_file, url=normalise_url(read_url, "--read-url") if read_url else None)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
        return
    for res in results:
        _print_result(res)
        if hasattr(res, "cells"):
            cells_search.print_cells(res, click.echo)
    for what, path in (("plot", plot), ("map", map_file)):
        if path is not None:
            click.echo(f"{what} written to {path}")
