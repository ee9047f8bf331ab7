"""Applies the Alembic migrations after making sure PostGIS and pgvector exist."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .. import config
from ..errors import ExtensionMissing
from .engine import check

# Tables owned by extensions, and the per-model HNSW indexes created at run time by `geoloc embed`.
EXTENSION_TABLES = {"spatial_ref_sys", "geometry_columns", "geography_columns", "raster_columns",
                    "raster_overviews"}
RUNTIME_INDEX_PREFIX = "embeddings_hnsw_"


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """What Alembic compares: geoloc's own schema, not extension tables or per-model indexes."""
    from geoalchemy2 import alembic_helpers

    if type_ == "table" and name in EXTENSION_TABLES:
        return False
    if type_ == "index" and name and name.startswith(RUNTIME_INDEX_PREFIX):
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


# geoloc/migrations, shipped in the wheel; the repository's alembic.ini points at the same folder.
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration for geoloc's migrations (needs no alembic.ini, so an installed copy works)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["geoloc_url"] = url or config.database_target().url
    return cfg


def ensure_extensions(url: str | None = None) -> None:
    """The extensions of config.EXTENSIONS in the database: already there (the embedded cluster's admin created them),
    or created now by a role allowed to (an external server)."""
    engine = check(url)
    with engine.begin() as conn:
        installed = set(conn.execute(sa.text("SELECT extname FROM pg_extension")).scalars())
        available = {
            row.name
            for row in conn.execute(sa.text("SELECT name FROM pg_available_extensions"))
        }
        for ext in config.EXTENSIONS:
            if ext in installed:
                continue
            if ext not in available:
                raise ExtensionMissing(
                    f"extension '{ext}' is not installed on the server",
                    hint="run scripts/install-system.sh (builds pgvector) or use docker/compose.yml",
                )
            try:
                with conn.begin_nested():
                    conn.execute(sa.text(f'CREATE EXTENSION IF NOT EXISTS "{ext}"'))
            except sa.exc.DBAPIError as exc:
                raise ExtensionMissing(f"cannot create extension '{ext}': {str(exc.orig).strip()}") from None


def migrate(url: str | None = None, revision: str = "head") -> str | None:
    """Create the extensions if missing and upgrade to REVISION; returns the new head."""
    ensure_extensions(url)
    command.upgrade(alembic_config(url), revision)
    return current_revision(url)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    with check(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql+psycopg://unused/x")).get_current_head()
