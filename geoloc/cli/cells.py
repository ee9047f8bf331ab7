"""`geoloc cells`: adaptive H3 geo-cell partitionings of the training images (classification targets)."""

from __future__ import annotations

import json

import click

from ..cells import partition as P

COMMANDS = ["cells"]


@click.group()
def cells() -> None:
    """Geo-cells: adaptive H3 partitionings stored in PostGIS (QGIS: view v_cells).

    Example: geoloc cells build city && geoloc train --name mnv3s-cells --cells city
    """


@cells.command("build")
@click.argument("name")
@click.option("--img-min", type=int, default=P.DEFAULT_IMG_MIN, show_default=True,
              help="Drop cells with fewer training images than this.")
@click.option("--img-max", type=int, default=P.DEFAULT_IMG_MAX, show_default=True,
              help="Split cells with more training images than this (coarsest level).")
@click.option("--levels", type=int, default=P.DEFAULT_LEVELS, show_default=True,
              help="Partitionings, coarse to fine; each divides --img-max by --ratio.")
@click.option("--ratio", type=float, default=P.DEFAULT_RATIO, show_default=True, help="img_max ratio between levels.")
@click.option("--min-res", type=int, default=P.DEFAULT_MIN_RES, show_default=True,
              help="Coarsest H3 resolution (7: ~5 km2, a district).")
@click.option("--max-res", type=int, default=P.DEFAULT_MAX_RES, show_default=True,
              help="Finest H3 resolution (10: ~66 m edge, a block).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=P.DEFAULT_SPLIT, show_default=True,
              help="Split whose images are counted.")
@click.option("--replace", is_flag=True, help="Rebuild an existing partition (swapped in at commit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def build(name: str, img_min: int, img_max: int, levels: int, ratio: float, min_res: int, max_res: int,
          split: str, replace: bool, as_json: bool) -> None:
    """Build partition NAME: split H3 cells over --img-max images, drop those under --img-min.

    Every location of every split gets its cell per level (table location_cells).

    Example: geoloc cells build city --img-min 25 --img-max 900 --levels 3
    """
    s = P.build_partition(name, img_min, img_max, levels, ratio, min_res, max_res, split, replace)
    if as_json:
        click.echo(json.dumps(s.to_json(), indent=2))
        return
    click.echo(f"partition '{s.name}' (id {s.partition_id}) from {s.images} {s.split} images, "
               f"img_min {s.settings.img_min}:")
    for lv in s.levels:
        res = ", ".join(f"res {r}: {n}" for r, n in lv.resolutions.items())
        click.echo(f"  level {lv.level}: img_max {lv.img_max:>5} -> {lv.cells:>4} cells ({res}); "
                   f"{lv.dropped_images} images in dropped cells")
    click.echo(f"  {s.located} locations lie in a finest-level cell")
    if s.replaced:
        click.echo(f"  the previous '{s.name}' was {s.replaced}")


@cells.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """List the partitions and their cells per level.

    Example: geoloc cells list
    """
    rows = P.list_partitions()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no cell partitions: build one with 'geoloc cells build NAME'")
    for r in rows:
        click.echo(f"{r['name']}: {r['images']} {r['split']} images, img_min {r['img_min']}, img_max {r['img_max']}, "
                   f"res {r['min_res']}-{r['max_res']}, cells per level {r['cells']}")
