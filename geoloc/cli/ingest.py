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
@click.option("--replace", is_flag=True, help="Overwrite an existing area of that name.")
def area(file: Path, name: str, replace: bool) -> None:
    """Load a polygon area from a GeoJSON file (Polygon/MultiPolygon, WGS84).

    Example: geoloc ingest area ../shared/data/stockholm/Stockholm.geojson --name stockholm
    """
    from ..collect.area import ingest_area

    res = ingest_area(file, name, replace=replace)
    click.echo(f"area '{res.name}' stored (id {res.id}): {res.parts} polygon part(s), "
               f"{res.area_m2 / 1e6:.2f} km² in EPSG:3006")


# Commands of the collection and imagery stages register themselves on the group.
from . import ingest_collect, ingest_imagery  # noqa: E402,F401
