"""Library side of `geoloc db ...`: one function per command."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import sqlalchemy as sa

from .. import config
from ..childenv import child_env
from ..errors import ClusterError, ConfigError, GeolocError
from . import migrate as _migrate
from .cluster import Cluster
from .engine import check
from .schema import Base


def up() -> Iterator[str]:
    """Create/start the embedded cluster, its roles and database, migrate. Yields progress lines.

    Concurrent calls on one data directory wait for each other (a lock file in the cluster folder)."""
    target = config.database_target()
    if target.external:
        yield f"GEOLOC_DATABASE_URL is set ({_printable(target.url)}): not starting the embedded server"
        return
    cluster = Cluster.default()
    with cluster.lock():
        if cluster.init():
            yield f"created cluster in {cluster.pgdata}"
        yield "started PostgreSQL" if cluster.start() else "PostgreSQL already running"
        if cluster.provision():
            yield f"created database {config.DEFAULT_DB} (owner {config.DEFAULT_USER})"
        yield f"migrated to {_migrate.migrate(cluster.url())}"
    yield f"ready: {url()}"


def down() -> str:
    target = config.database_target()
    if target.external:
        return "GEOLOC_DATABASE_URL is set: the external server is not managed by geoloc, nothing stopped"
    return "stopped PostgreSQL" if Cluster.default().stop() else "PostgreSQL was not running"


def _printable(url: str) -> str:
    """URL for output: libpq form, without a password."""
    return config.split_password(config.libpq_url(url))[0]


def _client(read_only: bool) -> tuple[str, Path | None]:
    """(SQLAlchemy URL with password, the passfile holding it or None) of the app or read-only role."""
    external = config.database_target().external
    if read_only:
        url = config.read_only_url()
        if url is None:
            if external:
                raise ConfigError("no read-only database URL: GEOLOC_DATABASE_URL is set but "
                                  "GEOLOC_READONLY_DATABASE_URL is not",
                                  hint="set GEOLOC_READONLY_DATABASE_URL to a read-only role's URL")
            raise ClusterError(f"the embedded cluster in {config.cluster_root()} was not created yet",
                               hint="run 'geoloc db up'")
        embedded = not external and not os.environ.get("GEOLOC_READONLY_DATABASE_URL")
    else:
        url, embedded = config.database_target().url, not external
    if not embedded:
        return url, None
    cluster = Cluster.default()
    if not config.read_secrets(cluster.root):
        raise ClusterError(f"the embedded cluster in {cluster.root} was not created yet", hint="run 'geoloc db up'")
    passfile = cluster.passfile if cluster.passfile.exists() else cluster.write_passfile()
    return url, passfile


def url(read_only: bool = False, show_password: bool = False) -> str:
    """Client URL of the app role (or, READ_ONLY, the reader) for psql, QGIS and other libpq clients.

    Without SHOW_PASSWORD it carries no password: the embedded cluster's URL names its 0600 libpq
    passfile instead (``?passfile=...``); an external URL loses its password (use ~/.pgpass or
    PGPASSWORD, or SHOW_PASSWORD for a client that needs it in the URL)."""
    full, passfile = _client(read_only)
    if show_password:
        return config.libpq_url(full)
    bare = _printable(full)
    if passfile is not None:
        bare += ("&" if "?" in bare else "?") + "passfile=" + quote(str(passfile), safe="/")
    return bare


def migrate(revision: str = "head") -> str | None:
    return _migrate.migrate(revision=revision)


def status() -> dict:
    """Versions, migration state and row counts of every geoloc table."""
    target = config.database_target()
    engine = check(target.url)
    with engine.connect() as conn:
        scalar = lambda q: conn.execute(sa.text(q)).scalar()  # noqa: E731
        exts = dict(conn.execute(sa.text("SELECT extname, extversion FROM pg_extension")).all())
        postgis = scalar("SELECT postgis_lib_version()") if "postgis" in exts else None
        existing = set(sa.inspect(conn).get_table_names())
        rows = {}
        for table in Base.metadata.sorted_tables:
            if table.name in existing:
                rows[table.name] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
        server = scalar("SHOW server_version")
    return {
        "url": _printable(target.url),
        "external": target.external,
        "postgresql": server,
        "postgis": postgis,
        "pgvector": exts.get("vector"),
        "revision": _migrate.current_revision(target.url),
        "head": _migrate.head_revision(),
        "rows": rows,
        "warnings": warnings_for(exts.get("vector")),
    }


PGVECTOR_SAFE = (0, 8, 4)
PGVECTOR_WARNING = (
    "pgvector {version} is older than 0.8.4 and has two known HNSW bugs: parallel index builds can "
    "overflow (fixed in 0.8.2; geoloc builds every HNSW index single-process, "
    "max_parallel_maintenance_workers = 0) and VACUUM after deletes can corrupt an HNSW index (fixed in "
    "0.8.3/0.8.4; geoloc rebuilds a model's index after bulk deletes of its rows instead of relying on "
    "VACUUM). Upgrade the server's pgvector to 0.8.4 or later")


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """'0.8.0' -> (0, 8, 0); None for a missing or unparsable version."""
    parts = (version or "").split("-")[0].split(".")
    return tuple(int(p) for p in parts) if parts and all(p.isdigit() for p in parts) else None


def warnings_for(pgvector: str | None) -> list[str]:
    """What `geoloc db status` warns about the server's extensions."""
    v = version_tuple(pgvector)
    if v is not None and v < PGVECTOR_SAFE:
        return [PGVECTOR_WARNING.format(version=pgvector)]
    return []


def replica_url(replica) -> str:
    """Client URL of a replica (geoloc.db.replica.Replica) without password: it names the replica's
    0600 passfile, for GEOLOC_READ_DATABASE_URL or --read-url."""
    bare = _printable(replica.url())
    return f"{bare}?passfile={quote(str(replica.cluster.passfile), safe='/')}"


def psql(args: list[str], read_only: bool = False) -> tuple[list[str], dict[str, str]]:
    """psql's command line (no password on it) and its environment (PGPASSFILE or PGPASSWORD)."""
    exe = shutil.which("psql") or str(config.pg_bindir() / "psql")
    if not shutil.which(exe):
        raise GeolocError("psql not found", hint="install postgresql-client-15")
    full, passfile = _client(read_only)
    bare, password = config.split_password(config.libpq_url(full))
    if passfile is not None:
        extra = {"PGPASSFILE": str(passfile)}
    else:
        extra = {"PGPASSWORD": password} if password else {}
    return [exe, bare, *args], child_env(extra=extra)
