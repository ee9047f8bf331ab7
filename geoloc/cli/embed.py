"""`geoloc embed`: store a model's embeddings of the images in pgvector and index them."""

from __future__ import annotations

import click

from ..retrieval.claims import CHUNK
from ..retrieval.embed import DEFAULT_BATCH
from ..splits import SPLITS

COMMANDS = ["embed"]
SHOW_SKIPPED = 10  # skipped files listed by name


@click.command()
@click.option("--model", "model", required=True, help="Registered model name (or thumbnail-16, the baseline).")
@click.option("--split", type=click.Choice(SPLITS), help="Only the images of this split.")
@click.option("--version", help="Only the images of this scraping version (e.g. v1).")
@click.option("--batch", type=int, default=DEFAULT_BATCH, show_default=True, help="Images per inference batch.")
@click.option("--chunk", type=int, default=CHUNK, show_default=True,
              help="Image ids per unit of work: claimed by one run, stored in one transaction.")
@click.option("--reindex", is_flag=True, help="Build a fresh HNSW index even when the current one is fine.")
def embed(model: str, split: str | None, version: str | None, batch: int, chunk: int, reindex: bool) -> None:
    """Embed every image the model has no embedding for yet, then make sure its HNSW index is current.

    Resumable: chunks are committed as they are written, and a rerun embeds only what is missing.
    Several runs of one model (on any machines) share the work: each chunk is embedded once. A file
    that cannot be read is skipped and listed; the others are stored. The index is built beside the
    old one and swapped in, so searches never lose it.

    Example: geoloc embed --model mnv3-small --split test
    """
    from ..retrieval.embed import embed_images

    s = embed_images(model, split=split, version=version, batch=batch, chunk=chunk, reindex=reindex, progress=True)
    scope = "all images" if split is None else f"split {split}" + (f" {version}" if version else "")
    click.echo(f"model '{s.model}' (dim {s.dim}), {scope}: {s.embedded} embedded now, {s.already} already "
               f"stored, {s.in_scope} in all")
    if s.by_others:
        click.echo(f"  {s.by_others} embedded meanwhile by another run of this model")
    if s.skipped:
        click.echo(f"  {len(s.skipped)} skipped (not stored; fix or remove them and run again):")
        for path, reason in s.skipped[:SHOW_SKIPPED]:
            click.echo(f"    {path}: {reason}")
        if len(s.skipped) > SHOW_SKIPPED:
            click.echo(f"    ... and {len(s.skipped) - SHOW_SKIPPED} more")
    if s.embedded:
        click.echo(f"  {s.seconds:.1f} s, {s.images_per_s:.0f} images/s")
    if s.index_built:
        click.echo(f"  HNSW index {s.index} built in {s.index_seconds:.1f} s")
        if s.index_spilled:
            click.echo(f"  Warning: {s.index_spilled}", err=True)
    elif s.index is None:
        click.echo(f"  no HNSW index: dimension {s.dim} is above pgvector's limit (searches are exact)")
    elif not s.index_present:
        click.echo("  no HNSW index: the model has no embeddings yet")
    else:
        click.echo(f"  HNSW index {s.index} up to date")
