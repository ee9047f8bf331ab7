"""The re-ranking options that `geoloc search` and `geoloc evaluate` share (defaults from the library)."""

from __future__ import annotations

import click

from ..retrieval import rerank

OPTIONS = [
    click.option("--rerank", "rerank_on", is_flag=True,
                 help="Re-rank the nearest images by SIFT geometry with the query image (OpenCV; reads the "
                      "image files, about half a second per query)."),
    click.option("--rerank-top", type=int, default=rerank.DEFAULT_TOP, show_default=True,
                 help="With --rerank: how many of the nearest images are re-ranked."),
    click.option("--rerank-weight", type=float, default=rerank.DEFAULT_WEIGHT, show_default=True,
                 help="With --rerank: candidates are ordered by similarity + this x inliers."),
]


def rerank_options(command):
    """Add --rerank, --rerank-top and --rerank-weight to COMMAND (as rerank_on, rerank_top, rerank_weight)."""
    for option in reversed(OPTIONS):
        command = option(command)
    return command


def rerank_params(rerank_on: bool, rerank_top: int, rerank_weight: float) -> rerank.RerankParams | None:
    """The library's RerankParams when --rerank is given, else None."""
    return rerank.RerankParams(rerank_top, rerank_weight) if rerank_on else None
