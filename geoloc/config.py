"""Where geoloc keeps things and which database it talks to, read from the environment.

Every setting has an environment variable so scripts, CI and the demo can point the same code at
other places without flags on every command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

DEFAULT_PORT = 54329  # not 5432: Debian's own cluster may already be there
DEFAULT_DB = "geoloc"
DEFAULT_USER = "geoloc"
PG_MAJOR = os.environ.get("GEOLOC_PG_MAJOR", "15")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    if os.geteuid() == 0:
        # root's home is private; the unprivileged server user must be able to reach its data dir
        return Path("/var/lib/geoloc")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "geoloc"


def data_dir() -> Path:
    """Root of geoloc's own files: the embedded cluster, model weights, reports."""
    return Path(os.environ.get("GEOLOC_DATA_DIR") or _default_data_dir()).expanduser()


def shared_data_dir() -> Path:
    """The real Stockholm data set (never copied into the repo)."""
    default = REPO_ROOT.parent / "shared" / "data" / "stockholm"
    return Path(os.environ.get("GEOLOC_SHARED_DATA") or default).expanduser()


def images_root() -> Path:
    """Folder that image paths in the database are relative to (the importer records it per run)."""
    return Path(os.environ.get("GEOLOC_IMAGES_ROOT") or shared_data_dir() / "images").expanduser()


def pg_bindir() -> Path:
    return Path(os.environ.get("GEOLOC_PG_BIN") or f"/usr/lib/postgresql/{PG_MAJOR}/bin")


def pg_port() -> int:
    raw = os.environ.get("GEOLOC_PG_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"GEOLOC_PG_PORT: '{raw}' is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"GEOLOC_PG_PORT: {port} is outside 1..65535")
    return port


@dataclass(frozen=True)
class DatabaseTarget:
    url: str
    external: bool  # True when GEOLOC_DATABASE_URL points elsewhere: db up/down leave it alone


def embedded_url(dbname: str = DEFAULT_DB, port: int | None = None) -> str:
    return f"postgresql+psycopg://{DEFAULT_USER}@127.0.0.1:{port or pg_port()}/{dbname}"


def database_target() -> DatabaseTarget:
    url = os.environ.get("GEOLOC_DATABASE_URL")
    if url:
        return DatabaseTarget(normalise_url(url), external=True)
    return DatabaseTarget(embedded_url(), external=False)


def normalise_url(url: str) -> str:
    """Accept libpq-style URLs and make SQLAlchemy use psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ConfigError(
        f"GEOLOC_DATABASE_URL: '{redact(url)}' is not a PostgreSQL URL (expected postgresql://USER@HOST:PORT/DB)"
    )


def redact(url: str) -> str:
    """Hide a password in a URL before it reaches a log or an error."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def libpq_url(url: str) -> str:
    """The URL as psql, QGIS and libpq expect it (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
