"""`geoloc embed`: store a model's embeddings of the images in pgvector and index them."""

from __future__ import annotations

import click

COMMANDS = ["embed"]


@click.command()
@click.option("--model", "model", required=True, help="Registered model name (or thumbnail-16, the baseline).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Only the images of this split.")
@click.option("--version", help="Only the images of this scraping version (e.g. v1).")
@click.option("--batch", type=int, default=64, show_default=True, help="Images per inference batch.")
def embed(model: str, split: str | None, version: str | None, batch: int) -> None:
    """Embed every image the model has no embedding for yet, then (re)build its HNSW index.

    Resumable: chunks are committed as they are written, and a rerun embeds only what is missing.

    Example: geoloc embed --model mnv3-small --split test
    """
    from ..retrieval.embed import embed_images

    s = embed_images(model, split=split, version=version, batch=batch, progress=True)
    scope = "all images" if split is None else f"split {split}" + (f" {version}" if version else "")
    click.echo(f"model '{s.model}' (dim {s.dim}), {scope}: {s.embedded} embedded now, {s.already} already "
               f"stored, {s.in_scope} in all")
    if s.embedded:
        click.echo(f"  {s.seconds:.1f} s, {s.images_per_s:.0f} images/s")
    if s.index_built:
        click.echo(f"  HNSW index {s.index} built in {s.index_seconds:.1f} s")
    elif s.index is None:
        click.echo(f"  no HNSW index: dimension {s.dim} is above pgvector's limit (searches are exact)")
    else:
        click.echo(f"  HNSW index {s.index} up to date")
