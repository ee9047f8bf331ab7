"""`geoloc embed` (filled by its issue)."""

from __future__ import annotations

import click

COMMANDS = ["embed"]


@click.command()
def embed() -> None:
    """Not implemented yet.

    Example: geoloc embed --help
    """
    raise click.ClickException("'geoloc embed' is not implemented yet")
