"""`geoloc models whiten`: a new model that is a registered one with its learned whitening built in."""

from __future__ import annotations

import click

from ..retrieval import postprocess as post
from ..retrieval.whiten import DEFAULT_FIT_SPLIT
from ..splits import SPLITS


@click.command("whiten")
@click.argument("source")
@click.option("--name", required=True, help="Name of the new, whitened model.")
@click.option("--dims", type=int, default=post.DEFAULT_WHITEN_DIMS, show_default="all",
              help="Principal directions kept (the new model's dimension).")
@click.option("--shrinkage", type=float, default=post.DEFAULT_WHITEN_SHRINKAGE, show_default=True,
              help="Added to each eigenvalue, as a share of the mean eigenvalue (regularises weak directions).")
@click.option("--split", type=click.Choice(SPLITS), default=DEFAULT_FIT_SPLIT, show_default=True,
              help="The split whose stored SOURCE embeddings the whitening is fitted on.")
def whiten(source: str, name: str, dims: int | None, shrinkage: float, split: str) -> None:
    """Register a new model NAME: SOURCE's network followed by the whitening learned on SOURCE's
    embeddings of a split and their places (the one `geoloc evaluate --post whiten` measures), as a
    final layer.

    SOURCE must be ready and embedded on that split ('geoloc embed --model SOURCE --split train').
    NAME's embedding of a photo is the whitened SOURCE embedding, so embed, search and serve use it
    like any model; embed it next.

    Example: geoloc models whiten mnv3s-160 --name mnv3s-160-w
    """
    from ..retrieval.whiten import whiten_model

    w = whiten_model(source, name, dims=dims, shrinkage=shrinkage, split=split)
    click.echo(f"model '{w.row.name}' (id {w.row.id}, dim {w.row.dim}): '{w.source.name}' (dim {w.source.dim}) "
               f"+ whitening fitted on {w.fit_count} embeddings of split {w.fit_split} "
               f"(shrinkage {shrinkage:g}), in {w.seconds:.1f} s")
    click.echo(f"  weights {w.row.weights_path}")
    click.echo(f"  next: geoloc embed --model {w.row.name}")
