"""`geoloc ingest locations`: the original buffer CSVs become locations (ids as in image names) and panoramas."""

from __future__ import annotations

import re
import shutil

import pytest
import sqlalchemy as sa

from geoloc.collect.locations import ingest_locations
from geoloc.errors import InputError

COUNTS = {100.0: 1832, 75.0: 353, 60.0: 934, 50.0: 1362, 45.0: 525, 35.0: 1556}


def _counts(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM locations) AS locations, (SELECT count(*) FROM panoramas) AS panoramas"
        )).one()


def test_import_all_six_csvs(cli, engine, shared_data):
    res = cli("ingest", "locations", *sorted((shared_data / "buffers").glob("*.csv")))
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "6562 locations in 6 file(s): 6562 added, 0 split(s) changed, 6562 new panoramas"
    assert "  buffer 45 m: 525 locations -> no split" in res.stdout
    with engine.connect() as conn:
        per = dict(conn.execute(sa.text(
            "SELECT buffer_m, count(*) FROM locations GROUP BY buffer_m")).all())
        splits = dict(conn.execute(sa.text(
            "SELECT buffer_m, min(split) FROM locations GROUP BY buffer_m")).all())
        first = conn.execute(sa.text(
            "SELECT l.*, ST_X(l.geom) AS lng, ST_Y(l.geom) AS lat, ST_Y(l.grid_geom) AS glat, p.capture_month, "
            "p.copyright FROM locations l JOIN panoramas p USING (pano_id) WHERE l.id = 1835")).one()
        ids = conn.execute(sa.text("SELECT min(id), max(id), bool_and(source = 'csv') FROM locations")).one()
        order = conn.execute(sa.text(
            "SELECT min(order_no), max(order_no) FROM locations WHERE buffer_m = 75")).one()
    assert per == COUNTS
    # as the original project: 100 m Training, 75/60 m Test, 50/35 m Validation, 45 m never scraped
    assert splits == {100: "train", 75: "test", 60: "test", 50: "val", 45: None, 35: "val"}
    assert tuple(ids) == (0, 6561, True)
    assert tuple(order) == (0, 352)
    # row 1835 = the 4th row of the 75 m file (ids 1832.. in file order)
    assert first.buffer_m == 75 and first.order_no == 3 and first.split == "test"
    assert str(first.capture_month).endswith("-01") and first.copyright == "© Google"
    assert 59.2 < first.lat < 59.4 and 17.9 < first.lng < 18.2 and first.grid_idx > 0
    assert abs(first.glat - first.lat) < 0.001  # the grid point is a few metres from its panorama


def test_reimport_adds_nothing_and_split_option_changes_only_splits(cli, engine, shared_data):
    folder = shared_data / "buffers"
    assert ingest_locations([folder]).locations_added == 6562
    again = ingest_locations([folder])
    assert (again.locations_added, again.splits_changed, again.panoramas_added) == (0, 0, 0)
    res = cli("ingest", "locations", folder / "new_order_buffer_45.csv", "--split", "45=val")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "525 locations in 1 file(s): 0 added, 525 split(s) changed, 0 new panoramas"
    assert tuple(_counts(engine)) == (6562, 6562)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM locations WHERE split = 'val'")).scalar() == 1362 + 1556 + 525


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("Latitude", "Lat", 1), "new_order_buffer_75.csv: missing column(s) Latitude"),
    (lambda t: t.replace(",59.32", ",59.3x2", 1), "new_order_buffer_75.csv, line 2: column 'Latitude': '59.3x2"),
    (lambda t: "\n".join(l if i != 3 else re.sub(r",20(\d\d)-(\d\d),", r",20\1-13,", l, count=1)
                        for i, l in enumerate(t.split("\n"))),
     "new_order_buffer_75.csv, line 4: column 'Date': '20"),
])
def test_bad_csv_is_one_line_error_and_stores_nothing(cli, engine, shared_data, tmp_path, edit, message):
    good = shared_data / "buffers" / "new_order_buffer_100.csv"
    bad = tmp_path / "new_order_buffer_75.csv"
    bad.write_text(edit((shared_data / "buffers" / "new_order_buffer_75.csv").read_text(encoding="utf-8")),
                   encoding="utf-8")
    res = cli("ingest", "locations", good, bad)
    assert res.exit_code == 1
    assert res.stderr.startswith(f"Error: {tmp_path}/") and message in res.stderr.splitlines()[0]
    assert tuple(_counts(engine)) == (0, 0)


def test_bad_file_names_and_split_options(cli, engine, shared_data, tmp_path):
    odd = tmp_path / "buffer.csv"
    shutil.copy(shared_data / "buffers" / "new_order_buffer_75.csv", odd)
    res = cli("ingest", "locations", odd)
    assert res.exit_code == 1
    assert res.stderr.splitlines()[0] == f"Error: {odd}: file name must be new_order_buffer_<metres>.csv (the buffer comes from it)"
    res = cli("ingest", "locations", tmp_path / "none.csv")
    assert res.stderr.splitlines()[0] == f"Error: {tmp_path / 'none.csv'}: file not found"
    res = cli("ingest", "locations", shared_data / "buffers", "--split", "100=training")
    assert res.stderr.splitlines()[0] == "Error: --split '100=training': split must be one of train, val, test or none"
    with pytest.raises(InputError, match="new_order_buffer_35.csv: location id 1832 .new_order_idx. also appears in"):
        ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv", _copy_as(shared_data, tmp_path, "75", "35")])
    assert tuple(_counts(engine)) == (0, 0)


def _copy_as(shared_data, tmp_path, src: str, dst: str):
    target = tmp_path / f"new_order_buffer_{dst}.csv"
    shutil.copy(shared_data / "buffers" / f"new_order_buffer_{src}.csv", target)
    return target


def test_collection_views_for_analysts_and_qgis(engine, shared_data):
    ingest_locations([shared_data / "buffers"])
    views = ("v_grid_points", "v_panoramas", "v_locations", "v_split_coverage")
    with engine.connect() as conn:
        registered = {r.f_table_name: (r.srid, r.type) for r in conn.execute(sa.text(
            "SELECT f_table_name, srid, type FROM geometry_columns WHERE f_table_name LIKE 'v\\_%'"))}
        rows = {v: conn.execute(sa.text(f"SELECT count(*) AS n, count(DISTINCT id) AS ids FROM {v}")).one()
                for v in views}
        coverage = {r.split: r for r in conn.execute(sa.text("SELECT * FROM v_split_coverage"))}
        loc = conn.execute(sa.text("SELECT * FROM v_locations WHERE id = 0")).one()
    for v in views:
        assert registered[v][0] == 4326, v
    assert registered["v_locations"][1] == "POINT" and registered["v_split_coverage"][1] == "POLYGON"
    assert {v: tuple(r) for v, r in rows.items()} == {
        "v_grid_points": (0, 0), "v_panoramas": (6562, 6562), "v_locations": (6562, 6562), "v_split_coverage": (4, 4)}
    assert {s: r.locations for s, r in coverage.items()} == {"train": 1832, "test": 353 + 934, "val": 1362 + 1556,
                                                             "none": 525}
    assert coverage["train"].buffers_m == "100" and coverage["val"].buffers_m == "35,50"
    assert 29 < coverage["train"].hull_km2 < 80 and coverage["train"].images == 0
    assert (loc.split, loc.buffer_m, loc.pano_date, loc.source) == ("train", 100, "2010-08", "csv")
    assert float(loc.dist_to_origin_m) == pytest.approx(122.1, abs=0.05)
