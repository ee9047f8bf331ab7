"""`geoloc demo` (filled by its issue)."""

from __future__ import annotations

import click

COMMANDS = ["demo"]


@click.command()
def demo() -> None:
    """Not implemented yet.

    Example: geoloc demo --help
    """
    raise click.ClickException("'geoloc demo' is not implemented yet")
