"""`geoloc train` (filled by its issue)."""

from __future__ import annotations

import click

COMMANDS = ["train"]


@click.command()
def train() -> None:
    """Not implemented yet.

    Example: geoloc train --help
    """
    raise click.ClickException("'geoloc train' is not implemented yet")
