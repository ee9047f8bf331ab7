"""Alembic environment: geoloc's schema, PostGIS-aware comparison, URL from geoloc's config."""

from __future__ import annotations

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from geoalchemy2 import alembic_helpers

from geoloc import config as geoloc_config
from geoloc.db.migrate import include_object
from geoloc.db.schema import Base

cfg = context.config
if cfg.config_file_name is not None and not cfg.attributes.get("geoloc_url"):
    fileConfig(cfg.config_file_name, disable_existing_loggers=False)


def run_migrations_online() -> None:
    url = cfg.attributes.get("geoloc_url") or geoloc_config.database_target().url
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_object=include_object,
            process_revision_directives=alembic_helpers.writer,
            render_item=alembic_helpers.render_item,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("geoloc migrations run online only: use 'geoloc db migrate' or 'alembic upgrade head'")
run_migrations_online()
