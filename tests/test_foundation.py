"""The foundation: embedded cluster, migrations, `geoloc db`, `ingest area`, CLI conventions."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from geoloc.cli import main
from geoloc.db.engine import check
from geoloc.db.migrate import downgrade, head_revision, include_object, migrate
from geoloc.db.schema import Base


def test_db_status_reports_versions_and_head(cli, db_url):
    res = cli("db", "status", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["postgresql"].startswith("15.")
    assert info["postgis"].startswith("3.3")
    assert info["pgvector"].startswith("0.8")
    assert info["revision"] == head_revision() == info["head"]
    assert set(info["rows"]) >= {"areas", "grid_points", "images", "embeddings", "models"}


def schema_diff(url: str) -> list:
    """What autogenerate would change to make the database match the models (empty when they agree)."""
    with check(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def test_migrations_round_trip_and_match_models(db_url):
    downgrade(db_url, "base")
    with sa.create_engine(db_url).connect() as conn:
        tables = set(sa.inspect(conn).get_table_names()) - {"spatial_ref_sys", "alembic_version"}
    assert tables == set()
    assert migrate(db_url) == head_revision()
    assert schema_diff(db_url) == []


def test_every_table_has_primary_key_and_geometries_are_4326(engine):
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        for table in Base.metadata.sorted_tables:
            assert insp.get_pk_constraint(table.name)["constrained_columns"], table.name
        srids = conn.execute(sa.text("SELECT DISTINCT srid FROM geometry_columns")).scalars().all()
    assert srids == [4326]


def test_ingest_area_stockholm(cli, engine, shared_data):
    res = cli("ingest", "area", shared_data / "Stockholm.geojson", "--name", "stockholm")
    assert res.exit_code == 0, res.output
    assert "29.0" in res.stdout and "km²" in res.stdout
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT count(*) AS n, bool_and(ST_IsValid(geom)) AS valid, max(GeometryType(geom)) AS gtype, "
            "max(ST_Area(ST_Transform(geom, 3006))) AS m2 FROM areas")).one()
    assert row.n == 1 and row.valid and row.gtype == "MULTIPOLYGON"
    assert 28.9e6 < row.m2 < 29.1e6


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"type": "Point", "coordinates": [18.0, 59.3]}', "geometry 0 is a Point, expected Polygon or MultiPolygon"),
    ('{"type": "FeatureCollection", "features": []}', "contains no polygon"),
    ('{"type": "Polygon", "coordinates": [[[18,59],[18.1,59.1],[18.1,59],[18,59.1],[18,59]]]}', "polygon 0 is invalid (Self-intersection"),
    ('{"type": "Polygon", "coordinates": [[[1800,59],[1801,59],[1801,60],[1800,59]]]}', "not WGS84"),
])
def test_ingest_area_rejects_bad_geojson_and_stores_nothing(cli, engine, tmp_path, content, message):
    bad = tmp_path / "bad.geojson"
    bad.write_text(content)
    res = cli("ingest", "area", bad, "--name", "bad")
    assert res.exit_code == 1
    assert res.stderr.startswith(f"Error: {bad}: ")
    assert message in res.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM areas")).scalar() == 0


def test_ingest_area_twice_is_an_error_unless_replace(cli, shared_data, engine):
    path = shared_data / "Stockholm.geojson"
    assert cli("ingest", "area", path, "--name", "sthlm").exit_code == 0
    res = cli("ingest", "area", path, "--name", "sthlm")
    assert res.exit_code == 1
    assert res.stderr == ("Error: area 'sthlm' already exists\n"
                          "Hint: use --replace to give it the new polygon (its grid points and metadata "
                          "answers are kept)\n")
    assert cli("ingest", "area", path, "--name", "sthlm", "--replace").exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM areas")).scalar() == 1


def test_unreachable_database_is_one_line_error(cli, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATABASE_URL", "postgresql://geoloc@127.0.0.1:1/none")
    res = cli("db", "status")
    assert res.exit_code == 1
    first = res.stderr.splitlines()[0]
    assert first.startswith("Error: cannot connect to postgresql://geoloc@127.0.0.1:1/none: ")
    assert "Hint: start the embedded database with 'geoloc db up'" in res.stderr


def test_bad_database_url_is_rejected(cli, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATABASE_URL", "mysql://user:secret@host/db")
    res = cli("db", "status")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[0] == (
        "Error: GEOLOC_DATABASE_URL: 'mysql://user:***@host/db' is not a PostgreSQL URL "
        "(expected postgresql://USER@HOST:PORT/DB)")


def test_db_up_and_down_leave_external_server_alone(cli, db_url):
    res = cli("db", "up")
    assert res.exit_code == 0 and "not starting the embedded server" in res.stdout
    res = cli("db", "down")
    assert res.exit_code == 0 and "nothing stopped" in res.stdout
    assert cli("db", "status").exit_code == 0


def test_db_url_prints_libpq_url(cli, db_url, pg_cluster):
    # no password unless asked for: the test database's URL is an external one with a password
    bare = f"postgresql://geoloc@127.0.0.1:{pg_cluster.port}/{db_url.rsplit('/', 1)[1]}"
    res = cli("db", "url")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == bare
    res = cli("db", "url", "--show-password")
    assert res.stdout.strip() == db_url.replace("postgresql+psycopg://", "postgresql://")
    reader = cli("db", "url", "--read-only").stdout.strip()
    assert reader == bare.replace("//geoloc@", "//geoloc_reader@")


def _all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path, cmd", list(_all_commands(main)), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_is_documented_with_an_example(path, cmd):
    assert cmd.help and "Example:" in cmd.help, f"geoloc {' '.join(path)} lacks a docstring with an example"


def test_console_script_help_runs():
    exe = [sys.executable, "-m", "geoloc", "--help"]
    out = subprocess.run(exe, capture_output=True, text=True, check=True).stdout
    assert "ingest" in out and "db" in out
