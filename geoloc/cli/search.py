"""`geoloc search` (filled by its issue)."""

from __future__ import annotations

import click

COMMANDS = ["search"]


@click.command()
def search() -> None:
    """Not implemented yet.

    Example: geoloc search --help
    """
    raise click.ClickException("'geoloc search' is not implemented yet")
