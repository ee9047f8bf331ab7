"""`geoloc models` (filled by its issue)."""

from __future__ import annotations

import click

COMMANDS = ["models"]


@click.command()
def models() -> None:
    """Not implemented yet.

    Example: geoloc models --help
    """
    raise click.ClickException("'geoloc models' is not implemented yet")
