"""`geoloc ingest ...`: everything that puts data into the database."""

from __future__ import annotations

from pathlib import Path

import click

COMMANDS = ["ingest"]


@click.group()
def ingest() -> None:
    """Load areas, grids, metadata, locations and images into the database.

    Example: geoloc ingest area Stockholm.geojson --name stockholm
    """


@ingest.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name to store the area under (unique).")
@click.option("--replace", is_flag=True,
              help="Give an existing area of that name the new polygon; its grid points and paid metadata "
                   "answers are kept.")
@click.option("--delete-answers", is_flag=True,
              help="With --replace: also delete the grid points outside the new polygon that have a paid "
                   "metadata answer, and those answers.")
def area(file: Path, name: str, replace: bool, delete_answers: bool) -> None:
    """Load a polygon area from a GeoJSON file (Polygon/MultiPolygon, WGS84).

    With --replace the area keeps its id, grid points and metadata answers; grid points outside the
    new polygon without an answer are removed, those with a paid answer are kept unless
    --delete-answers is given. Run `geoloc ingest grid` afterwards to add the points of new parts.

    Example: geoloc ingest area ../shared/data/stockholm/Stockholm.geojson --name stockholm
    """
    from ..collect.area import ingest_area

    res = ingest_area(file, name, replace=replace, delete_answers=delete_answers)
    size = f"{res.parts} polygon part(s), {res.area_m2 / 1e6:.2f} km² in EPSG:3006"
    if not res.replaced:
        click.echo(f"area '{res.name}' stored (id {res.id}): {size}")
        return
    click.echo(f"area '{res.name}' replaced (id {res.id}): {size}")
    for line in res.replacement_lines():
        click.echo(f"  {line}")


# Imported for their side effect: the @ingest.command decorators in these modules add the collection
# and imagery commands to the group (an 'unused import' to pyflakes, needed all the same).
from . import ingest_collect, ingest_imagery  # noqa: E402,F401
