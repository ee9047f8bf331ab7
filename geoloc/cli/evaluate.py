"""`geoloc evaluate` (filled by its issue)."""

from __future__ import annotations

import click

COMMANDS = ["evaluate"]


@click.command()
def evaluate() -> None:
    """Not implemented yet.

    Example: geoloc evaluate --help
    """
    raise click.ClickException("'geoloc evaluate' is not implemented yet")
