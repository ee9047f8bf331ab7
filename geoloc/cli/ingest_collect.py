"""Commands registered on `geoloc ingest` for collection: locations CSVs, grid, metadata, buffers."""

from __future__ import annotations

from pathlib import Path

import click

from ..collect.buffers import ORIGIN
from ..collect.grid import DEFAULT_SPACING
from ..collect.locations import DEFAULT_SPLITS
from ..collect.metadata import DEFAULT_CONCURRENCY, DEFAULT_RATE
from ..collect.streetview_client import DEFAULT_BACKOFF, DEFAULT_BASE_URL, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from ..splits import SPLITS
from .ingest import ingest

SPLIT_HELP = (f"Split of a buffer as BUFFER_M=SPLIT ({', '.join(SPLITS)} or none); repeatable, applied on top "
              "of the default " + " ".join(f"{m:g}={s or 'none'}" for m, s in DEFAULT_SPLITS.items()) + ".")


@ingest.command()
@click.argument("csv_files", metavar="CSV...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--split", "split_opts", multiple=True, metavar="BUFFER_M=SPLIT", help=SPLIT_HELP)
def locations(csv_files: tuple[Path, ...], split_opts: tuple[str, ...]) -> None:
    """Import the original buffer CSVs (new_order_buffer_<m>.csv) as locations and panoramas.

    Location ids are the CSVs' new_order_idx, so they match the image file names. A folder stands
    for all new_order_buffer_*.csv in it. One transaction; re-importing adds nothing.

    Example: geoloc ingest locations ../shared/data/stockholm/buffers --split 45=val
    """
    from ..collect.locations import ingest_locations, split_map

    res = ingest_locations(list(csv_files), split_map(split_opts))
    click.echo(f"{res.rows} locations in {res.files} file(s): {res.locations_added} added, "
               f"{res.splits_changed} split(s) changed, {res.panoramas_added} new panoramas")
    for metres, n in sorted(res.per_buffer.items(), reverse=True):
        click.echo(f"  buffer {metres:g} m: {n} locations -> {res.splits.get(metres) or 'no split'}")


@ingest.command()
@click.option("--area", required=True, help="Name of the area (see geoloc ingest area).")
@click.option("--spacing", type=float, default=DEFAULT_SPACING, show_default=True, help="Grid spacing in metres (EPSG:3006).")
def grid(area: str, spacing: float) -> None:
    """Lay a regular grid of candidate points over an area (spacing in true metres).

    Points inside the area polygon are stored with a stable index (row-major cell number in the
    area's bounding box); re-running with the same spacing adds nothing.

    Example: geoloc ingest grid --area stockholm --spacing 10
    """
    from ..collect.grid import ingest_grid

    res = ingest_grid(area, spacing)
    click.echo(f"grid of area '{res.area}' at {res.spacing_m:g} m: {res.added} points added, "
               f"{res.total} in total ({res.seconds:.1f} s)")


@ingest.command()
@click.option("--area", required=True, help="Name of the area whose grid points are checked.")
@click.option("--spacing", type=float, default=None, help="Only the grid of this spacing (default: every grid of the area).")
@click.option("--limit", type=int, default=None, help="Check at most this many points in this run (request cap).")
@click.option("--rate", type=float, default=DEFAULT_RATE, show_default=True, help="Requests per second, retries included (0: no limit).")
@click.option("--concurrency", type=int, default=DEFAULT_CONCURRENCY, show_default=True, help="Requests in flight at once (threads).")
@click.option("--base-url", default=None, help=f"API base URL (default: $GEOLOC_STREETVIEW_BASE_URL or {DEFAULT_BASE_URL}).")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True, help="Seconds to wait for one answer.")
@click.option("--retries", type=int, default=DEFAULT_RETRIES, show_default=True, help="Retries of a point on 429/5xx/timeouts/garbage.")
@click.option("--backoff", type=float, default=DEFAULT_BACKOFF, show_default=True, help="Seconds before the first retry; doubles each time.")
def metadata(area: str, spacing: float | None, limit: int | None, rate: float, concurrency: int,
             base_url: str | None, timeout: float, retries: int, backoff: float) -> None:
    """Ask the Street View metadata API about every unchecked grid point of an area.

    The key comes from GEOLOC_GOOGLE_API_KEY (never printed or stored). Each answer is committed
    on its own, so the command can be stopped at any time: the next run continues with the
    points not checked yet. Several runs (on several machines) can work on one area at once:
    each point is claimed by one of them and requested once. REQUEST_DENIED stops the run.

    Example: GEOLOC_GOOGLE_API_KEY=... geoloc ingest metadata --area stockholm --limit 1000 --rate 20
    """
    from ..collect.metadata import ingest_metadata

    res = ingest_metadata(area, limit=limit, rate=rate, concurrency=concurrency, base_url=base_url,
                          spacing=spacing, timeout=timeout, retries=retries, backoff=backoff,
                          progress=True)
    answers = ", ".join(f"{status} {n}" for status, n in res.answers.most_common()) or "none"
    click.echo(f"checked {res.checked} points of area '{res.area}' in {res.seconds:.1f} s "
               f"({res.requests} requests, {res.rate:.1f}/s, {res.retries} retries): {answers}; "
               f"{res.new_panoramas} new panoramas")
    if res.failed:
        click.echo(f"{res.failed} points got no usable answer and stay unchecked (run again to retry)")
    elsewhere = f" ({res.elsewhere} being checked by other workers)" if res.elsewhere else ""
    click.echo(f"{res.remaining} of {res.total} grid points still unchecked{elsewhere}")


@ingest.command()
@click.option("--origin", default=",".join(map(str, ORIGIN)), show_default=True,
              help="LAT,LNG the candidates are ordered by distance from (default: Gamla Stan).")
@click.option("--meters", type=float, multiple=True, help="Buffer distances in selection order (repeat or list them).")
@click.argument("more_meters", metavar="[METERS]...", nargs=-1, type=float)
@click.option("--split", "split_opts", multiple=True, metavar="BUFFER_M=SPLIT", help=SPLIT_HELP)
@click.option("--quad-segs", type=int, default=0, show_default=True,
              help="0: exact circles (ST_DWithin). 16: shapely's default buffer polygon, as the original "
                   "(reproduces the CSVs exactly; pairs may be up to 0.12 % closer than the buffer).")
@click.option("--replace", is_flag=True, help="Replace an earlier, different selection of these buffers.")
def buffers(origin: str, meters: tuple[float, ...], more_meters: tuple[float, ...], split_opts: tuple[str, ...],
            quad_segs: int, replace: bool) -> None:
    """Select well-spaced locations from all panoramas, buffer by buffer, and assign splits.

    Candidates are ordered by distance to the origin; a candidate is kept when no location kept
    so far (this buffer or an earlier one) lies within the buffer. Buffers that already have
    locations imported from the CSVs are only compared with them (kept, equal, Jaccard); the
    others are stored with source 'selection' (ids after the largest in use, in selection order).

    Example: geoloc ingest buffers --origin 59.3249,18.0694 --meters 100 75 60 50 45 35 --split 45=val
    """
    from ..collect.buffers import DEFAULT_METERS, ingest_buffers, parse_origin
    from ..collect.locations import split_map

    chosen = list(meters) + list(more_meters) or list(DEFAULT_METERS)
    res = ingest_buffers(parse_origin(origin), chosen, split_map(split_opts), replace=replace, quad_segs=quad_segs)
    shape = "exact circles" if not res.quad_segs else f"polygons of {4 * res.quad_segs} sides"
    click.echo(f"{res.candidates} candidate panoramas, buffers as {shape}: selected in "
               f"{res.select_seconds:.1f} s ({res.seconds:.1f} s in all)")
    for b in res.buffers:
        line = f"  buffer {b.buffer_m:g} m -> {b.split or 'no split'}: kept {b.kept}, {b.action}"
        if b.csv:
            line += (f" ({b.csv} CSV locations, {b.csv_equal} equal, {b.csv_same_order} in the same order, "
                     f"Jaccard {b.jaccard:.3f})")
        elif b.stored:
            line += f" ({b.stored} new locations)"
        click.echo(line)
