"""`geoloc serve`: the interactive web page."""

from __future__ import annotations

import click

from ..serve.server import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_WORKERS

COMMANDS = ["serve"]


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on (0.0.0.0: every interface - anyone who can reach it may search).")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="TCP port.")
@click.option("--model", help="Default model of the page (default: the best-validated ready model).")
@click.option("--workers", type=int, default=DEFAULT_WORKERS, show_default=True,
              help="Worker processes, each with its own warm model and connection pool.")
def serve(host: str, port: int, model: str | None, workers: int) -> None:
    """Serve a web page where anyone drops a photo and sees where it was taken.

    The page shows the predicted place on a map (best match and consensus), the nearest database
    images, a region filter and a model chooser; /eval draws an evaluation run, /docs the JSON API.
    Uploads are kept in memory, never written to disk.

    \b
    Example: geoloc serve --port 8000 --model mnv3-small
    """
    from ..serve import serve as run_server

    run_server(host=host, port=port, model=model, workers=workers, announce=click.echo)
