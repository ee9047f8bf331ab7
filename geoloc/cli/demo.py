"""`geoloc demo`: the whole Stockholm pipeline, end to end, with a report."""

from __future__ import annotations

from pathlib import Path

import click

from ..demo import DEFAULT_CELLS_MODEL, DEFAULT_MODEL, DEFAULT_TRAIN_MINUTES

COMMANDS = ["demo"]


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="The Stockholm data folder [default: ../shared/data/stockholm or GEOLOC_SHARED_DATA].")
@click.option("--train-minutes", type=float, default=DEFAULT_TRAIN_MINUTES, show_default=True,
              help="Time budget of the from-scratch training on the CPU.")
@click.option("--model", "model_name", default=None,
              help=f"Name the trained model is registered under [{DEFAULT_MODEL}; with --cells {DEFAULT_CELLS_MODEL}].")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for report.md/report.html [default: DATA_DIR/reports/demo].")
@click.option("--retrain", is_flag=True, help="Train again even if the model is already trained.")
@click.option("--reimport", is_flag=True,
              help="Load the area polygon again and re-run the grid and image imports even if data is stored "
                   "(grid points and paid metadata answers are kept).")
@click.option("--cells", is_flag=True,
              help="Geo-cells too: build the cell partition, train the model with cell heads and add the "
                   "cells-only / retrieval / hybrid / thumbnails table (geoloc evaluate --cells) to the report.")
def demo(data, train_minutes, model_name, report_dir, retrain, reimport, cells) -> None:
    """Run the whole pipeline on the real Stockholm data and write a report.

    Starts the database, loads the area and its 10 m grid, imports the buffer CSVs and re-runs the
    buffer selection in SQL, imports the images, trains the CPU-default model for a bounded time,
    embeds every image, evaluates on the test split beside the thumbnail baseline, and writes
    report.md / report.html. A rerun reuses everything already done. --cells adds the geo-cells
    (partition, cell heads, evaluate --cells) on the same budget.

    Example: geoloc demo --train-minutes 20   # a shorter run than the default, a weaker model
    """
    from ..demo import demo as run_demo

    result = run_demo(data, train_minutes, model_name, report_dir, retrain, reimport, cells, echo=click.echo)
    click.echo("")
    click.echo(f"{'stage':<34} {'seconds':>9}")
    for s in result.stages:
        click.echo(f"{s.name:<34} {s.seconds:>9.1f}")
    click.echo(f"report: {result.report_html}")
