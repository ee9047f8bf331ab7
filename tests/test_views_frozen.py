"""The QGIS views: every migration runs its own frozen SQL, and the migrated database ends with the
views exactly as geoloc/sql/views/ (the head's text) defines them."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from geoloc.db import engine as db_engine
from geoloc.db import sqlfiles
from geoloc.db.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
VIEW_FILES = sorted((REPO / "geoloc" / "sql" / "views").glob("*.sql"))
CREATE = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(\w+)", re.IGNORECASE)


def _definitions(conn, schema: str) -> dict[str, str]:
    rows = conn.execute(sa.text(
        "SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'v' AND n.nspname = :s "
        "AND NOT EXISTS (SELECT FROM pg_depend AS d WHERE d.objid = c.oid AND d.deptype = 'e')"  # PostGIS's own
    ), {"s": schema}).all()
    # a view over another view names it with its schema in one of the two: compare without schemas
    return {name: re.sub(r"\b(?:public|head)\.", "", text) for name, text in rows}


def test_view_files_each_define_one_view():
    names = [CREATE.findall(f.read_text()) for f in VIEW_FILES]
    assert VIEW_FILES and all(len(n) == 1 for n in names), names


def test_migrated_views_match_the_head_files(engine):
    with engine.begin() as conn:
        migrated = _definitions(conn, "public")
        conn.execute(sa.text("CREATE SCHEMA head"))
        conn.execute(sa.text("SET LOCAL search_path = head, public"))
        for f in VIEW_FILES:  # in name order: collection_* before the views that may use them
            conn.exec_driver_sql(f.read_text())
        head = _definitions(conn, "head")
    assert set(head) == {CREATE.findall(f.read_text())[0] for f in VIEW_FILES}
    assert set(migrated) == set(head), "a view file has no migration, or a migration's view has no file"
    changed = sorted(name for name in head if head[name] != migrated[name])
    assert not changed, f"geoloc/sql/views differs from the migrated database for {changed}: add a migration"


def test_an_edited_view_file_is_noticed(engine):
    """The comparison above is not blind: a changed definition shows up as a difference."""
    f = REPO / "geoloc" / "sql" / "views" / "collection_split_coverage.sql"
    edited = f.read_text().replace("SELECT", "SELECT 1 AS extra_column,", 1)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA head"))
        conn.execute(sa.text("SET LOCAL search_path = head, public"))
        conn.exec_driver_sql(edited)
        head = _definitions(conn, "head")
        migrated = _definitions(conn, "public")
    assert head["v_split_coverage"] != migrated["v_split_coverage"]


def test_migrations_do_not_read_the_head_sql(pg_cluster, monkeypatch, tmp_path):
    """With geoloc/sql/ empty, a new database still migrates to head with all its views (frozen copies)."""
    name = "t_frozen_views"
    pg_cluster.provision(name)
    url = pg_cluster.url(name)
    monkeypatch.setattr(sqlfiles, "SQL_DIR", tmp_path)
    sqlfiles.read.cache_clear()
    try:
        migrate(url)
        with db_engine.get_engine(url).connect() as conn:
            views = set(_definitions(conn, "public"))
    finally:
        sqlfiles.read.cache_clear()
        db_engine.get_engine(url).dispose()
        pg_cluster.drop_database(name)
    assert views == {"v_grid_points", "v_panoramas", "v_locations", "v_split_coverage", "v_images",
                     "v_image_locations", "v_capture_jobs", "v_eval_predictions", "v_cells"}
