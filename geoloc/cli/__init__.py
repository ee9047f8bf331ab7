"""The `geoloc` command line: thin click wrappers, each calling one same-named library function.

Library code raises GeolocError subclasses; only here are they turned into a one-line
``Error: ...`` message (plus a ``Hint: ...`` line when there is one) and a non-zero exit code.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from ..errors import GeolocError

# TensorFlow's C++ start-up chatter is noise on a command line; -vv still shows Python logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class GeolocGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GeolocError as exc:
            click.echo(f"Error: {exc}", err=True)
            if exc.hint:
                click.echo(f"Hint: {exc.hint}", err=True)
            ctx.exit(1)


@click.group(cls=GeolocGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="geoloc")
def main(verbose: int) -> None:
    """geoloc: tell where a street-level photo was taken.

    Everything lives in PostgreSQL (PostGIS + pgvector). Start with:

        geoloc db up && geoloc db status
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register() -> None:
    from . import cells, db, embed, evaluate, ingest, models, search, train, demo, serve  # noqa: F401

    for module in (db, ingest, train, models, embed, search, evaluate, demo, serve, cells):
        for name in getattr(module, "COMMANDS", ()):
            main.add_command(getattr(module, name))


_register()
