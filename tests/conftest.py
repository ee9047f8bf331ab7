"""Test fixtures: one real PostgreSQL + PostGIS + pgvector cluster per session, started by geoloc's
own code, and a fresh database per test cloned from a migrated template (about 0.1 s each)."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geoloc import config
from geoloc.db import engine as db_engine
from geoloc.db.cluster import Cluster
from geoloc.db.migrate import migrate

TEMPLATE = "geoloc_template"
_counter = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SuiteCluster(Cluster):
    """geoloc's cluster, plus what only the tests do: drop the databases they made."""

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_cluster() -> SuiteCluster:
    """The session's cluster, set up like `geoloc db up` does: passwords only, admin/app/reader roles."""
    # mkdtemp in /tmp (not pytest's 0700 tmp tree): as root the server runs as 'postgres' and must reach it
    root = Path(tempfile.mkdtemp(prefix="geoloc-test-pg-"))
    os.chmod(root, 0o755)
    cluster = SuiteCluster(root / "pg", _free_port(),
                           extra_settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
    cluster.init()
    cluster.start()
    cluster.provision(TEMPLATE)  # roles, database owned by the app role, extensions, reader grants
    migrate(cluster.url(TEMPLATE))  # as the app role, like `geoloc db up`
    db_engine.get_engine(cluster.url(TEMPLATE)).dispose()
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db_url(pg_cluster, monkeypatch) -> str:
    """A fresh, migrated database for this test, owned by the app role (the URL's user);
    GEOLOC_DATABASE_URL and GEOLOC_READONLY_DATABASE_URL point every command at it."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    pg_cluster.create_database(name, template=TEMPLATE)
    url = pg_cluster.url(name)
    reader = pg_cluster.url(name, config.READER_USER)
    monkeypatch.setenv("GEOLOC_DATABASE_URL", url)
    monkeypatch.setenv("GEOLOC_READONLY_DATABASE_URL", reader)
    yield url
    db_engine.get_engine(url).dispose()
    db_engine.get_engine(reader).dispose()
    pg_cluster.drop_database(name)


@pytest.fixture
def engine(db_url) -> sa.Engine:
    return db_engine.get_engine(db_url)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Stockholm data at ../shared (GEOLOC_SHARED_DATA overrides)."""
    path = config.shared_data_dir()
    if not (path / "Stockholm.geojson").exists():
        pytest.fail(f"real data not found at {path}: put ../shared beside the repo or set GEOLOC_SHARED_DATA")
    return path


@pytest.fixture
def cli():
    """Run `geoloc ARGS...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    from geoloc.cli import main

    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)

    return run
