"""Library side of `geoloc db ...`: one function per command."""

from __future__ import annotations

import shutil
from typing import Iterator

import sqlalchemy as sa

from .. import config
from ..errors import GeolocError
from . import migrate as _migrate
from .cluster import Cluster
from .engine import check
from .schema import Base


def up() -> Iterator[str]:
    """Create/start the embedded cluster, create the database, migrate. Yields progress lines."""
    target = config.database_target()
    if target.external:
        yield f"GEOLOC_DATABASE_URL is set ({config.redact(config.libpq_url(target.url))}): not starting the embedded server"
        return
    cluster = Cluster.default()
    if cluster.init():
        yield f"created cluster in {cluster.pgdata}"
    yield "started PostgreSQL" if cluster.start() else "PostgreSQL already running"
    if cluster.create_database():
        yield f"created database {config.DEFAULT_DB}"
    yield f"migrated to {_migrate.migrate(target.url)}"
    yield f"ready: {config.libpq_url(target.url)}"


def down() -> str:
    target = config.database_target()
    if target.external:
        return "GEOLOC_DATABASE_URL is set: the external server is not managed by geoloc, nothing stopped"
    return "stopped PostgreSQL" if Cluster.default().stop() else "PostgreSQL was not running"


def url() -> str:
    return config.libpq_url(config.database_target().url)


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
        "url": config.libpq_url(engine.url.render_as_string(hide_password=True)),
        "external": target.external,
        "postgresql": server,
        "postgis": postgis,
        "pgvector": exts.get("vector"),
        "revision": _migrate.current_revision(target.url),
        "head": _migrate.head_revision(),
        "rows": rows,
    }


def psql(args: list[str]) -> list[str]:
    exe = shutil.which("psql") or str(config.pg_bindir() / "psql")
    if not shutil.which(exe):
        raise GeolocError("psql not found", hint="install postgresql-client-15")
    return [exe, url(), *args]
