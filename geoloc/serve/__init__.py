"""`geoloc serve`: a web page where anyone drops a photo and sees where it was taken.

The page and its JSON API (FastAPI, served by uvicorn) read the same database with the same one-SQL
search as `geoloc search`; uploads stay in memory and are opened only through geoloc.imagefile.
`create_app` builds the application, `serve` runs it. Both are imported on first use, so the CLI
does not load FastAPI for other commands.
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(name)
