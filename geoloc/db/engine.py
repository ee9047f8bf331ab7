"""Connections to whichever database is configured (embedded cluster or GEOLOC_DATABASE_URL)."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import config
from ..errors import DatabaseUnavailable


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8)


def get_engine(url: str | None = None) -> Engine:
    return _engine(url or config.database_target().url)


def check(url: str | None = None) -> Engine:
    """The engine, after proving the server answers; DatabaseUnavailable otherwise."""
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        _check_embedded(engine.url, exc.orig)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"cannot connect to {config.redact(config.libpq_url(engine.url.render_as_string(hide_password=True)))}: {reason}"
        ) from None
    return engine


def _check_embedded(url: sa.URL, error) -> None:
    """geoloc's own cluster did not answer: say so when it is not running (not created yet, or
    stopped), or when the server on its port is someone else's (it rejects our password)."""
    from .cluster import Cluster, password_rejected

    target = config.database_target()
    if target.external:
        return
    embedded = sa.engine.make_url(target.url)
    if (url.host, url.port) != (embedded.host, embedded.port):
        return
    cluster = Cluster.default()
    if password_rejected(error):
        raise cluster.port_error("answered by a server that rejects geoloc's password")
    if not cluster.running:
        raise cluster.not_running()


@contextmanager
def begin(url: str | None = None) -> Iterator[Connection]:
    """A connection inside one transaction: everything or nothing is stored."""
    with check(url).begin() as conn:
        yield conn


@contextmanager
def transaction(conn: Connection | None = None) -> Iterator[Connection]:
    """CONN when the caller already holds one (its transaction decides); otherwise a new `begin()`."""
    if conn is not None:
        yield conn
        return
    with begin() as new:
        yield new


def psycopg_connection(conn: Connection):
    """The psycopg 3 connection behind a SQLAlchemy one, for COPY and server-side cursors."""
    return conn.connection.driver_connection
