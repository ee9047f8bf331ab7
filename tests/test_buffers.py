"""`geoloc ingest buffers`: the greedy buffer selection in SQL over the panoramas of the six CSVs."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely
import sqlalchemy as sa

from geoloc.collect.buffers import ingest_buffers
from geoloc.collect.locations import ingest_locations
from geoloc.errors import InputError

METERS = [100, 75, 60, 50, 45, 35]
CSV_COUNTS = {100: 1832, 75: 353, 60: 934, 50: 1362, 45: 525, 35: 1556}
TO_3006 = pyproj.Transformer.from_crs(4326, 3006, always_xy=True)


@pytest.fixture
def panoramas_only(engine, shared_data):
    """The 6,562 panoramas of the CSVs as candidates, without the CSV locations."""
    ingest_locations([shared_data / "buffers"])
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM locations"))


def stored(engine, source="selection"):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT id, pano_id, buffer_m, order_no, split, dist_to_origin_m, ST_X(geom) AS lng, ST_Y(geom) AS lat "
            "FROM locations WHERE source = :s ORDER BY id"), {"s": source}).all()


def violations(rows, meters) -> list[tuple]:
    """Pairs closer than the later one's buffer, within a set or against an earlier set (shapely)."""
    found, earlier = [], np.empty((0, 2))
    for m in meters:
        mine = [r for r in rows if r.buffer_m == m]
        xy = np.column_stack(TO_3006.transform([r.lng for r in mine], [r.lat for r in mine]))
        pts = shapely.points(xy)
        i, j = shapely.STRtree(pts).query(pts, predicate="dwithin", distance=m)
        found += [(m, "same set", float(np.hypot(*(xy[a] - xy[b])))) for a, b in zip(i, j) if a < b]
        if len(earlier):
            i, j = shapely.STRtree(shapely.points(earlier)).query(pts, predicate="dwithin", distance=m)
            found += [(m, "earlier set", float(np.hypot(*(xy[a] - earlier[b])))) for a, b in zip(i, j)]
        earlier = np.vstack([earlier, xy])
    return found


def test_selection_over_all_csv_panoramas_respects_its_buffers(cli, engine, panoramas_only):
    res = cli("ingest", "buffers", "--meters", *METERS)
    assert res.exit_code == 0, res.output
    rows = stored(engine)
    counts = {m: sum(r.buffer_m == m for r in rows) for m in METERS}
    assert res.stdout.splitlines()[0].startswith("6562 candidate panoramas, buffers as exact circles: selected in ")
    assert "  buffer 100 m -> train: kept 1770, stored (1770 new locations)" in res.stdout
    assert counts == {100: 1770, 75: 340, 60: 929, 50: 1368, 45: 544, 35: 1598}
    assert violations(rows, METERS) == []
    # ids in selection order; order numbers per buffer; distances ascending; splits as configured
    assert [r.id for r in rows] == list(range(len(rows)))
    assert [(r.buffer_m, r.order_no) for r in rows] == [
        (m, k) for m in METERS for k in range(counts[m])]
    for m in METERS:
        d = [r.dist_to_origin_m for r in rows if r.buffer_m == m]
        assert d == sorted(d)
    assert {r.buffer_m: r.split for r in rows} == {100: "train", 75: "test", 60: "test", 50: "val", 45: None, 35: "val"}
    # same input, same result: nothing to do
    res = cli("ingest", "buffers", "--meters", *METERS)
    assert res.exit_code == 0 and res.stdout.count(", unchanged") == 6
    assert stored(engine) == rows


def test_polygon_buffers_reproduce_the_original_csvs_exactly(engine, shared_data):
    ingest_locations([shared_data / "buffers"])
    exact = ingest_buffers(meters=METERS, quad_segs=16)
    assert [(b.buffer_m, b.kept, b.csv, b.csv_equal, b.csv_same_order, b.jaccard, b.action) for b in exact.buffers] == [
        (m, n, n, n, n, 1.0, "compared with CSV") for m, n in CSV_COUNTS.items()]
    circles = ingest_buffers(meters=METERS)
    for b in circles.buffers:
        print(f"exact circles, buffer {b.buffer_m:g} m: kept {b.kept}, CSV {b.csv}, equal {b.csv_equal}, "
              f"Jaccard {b.jaccard:.3f}")
        assert 0.65 < b.jaccard < 0.9
    assert stored(engine) == []  # buffers with CSV locations are compared, never written
    # the original's polygons let pairs come up to 0.12 % closer than the buffer: the CSVs show it
    close = violations(stored(engine, "csv"), METERS)
    assert close and all(d > 0.998 * m for m, _, d in close)


def test_new_buffer_after_the_csv_ones_is_stored_after_the_largest_id(cli, engine, shared_data):
    ingest_locations([shared_data / "buffers"])
    # every CSV panorama is in a CSV set already: add candidates (stand-ins at 500 real grid points)
    lines = (shared_data / "no_response_locations.csv").read_text(encoding="utf-8").splitlines()[1::30]
    extra = [{"p": f"test-{n}", "lat": float(line.split('"')[1].split(",")[0]),
              "lng": float(line.split('"')[1].split(",")[1])} for n, line in enumerate(lines)]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO panoramas (pano_id, geom) VALUES (:p, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326))"),
                     extra)
    res = cli("ingest", "buffers", "--meters", *METERS, 30, "--quad-segs", "16", "--split", "30=train")
    assert res.exit_code == 0, res.output
    new = stored(engine)
    assert new and new[0].id == 6562 and [r.id for r in new] == list(range(6562, 6562 + len(new)))
    assert {r.buffer_m for r in new} == {30} and {r.split for r in new} == {"train"}
    assert f"  buffer 30 m -> train: kept {len(new)}, stored ({len(new)} new locations)" in res.stdout
    # far enough from every CSV location (up to the original's polygon approximation)
    all_rows = stored(engine, "csv") + new
    assert all(d > 0.998 * m for m, _, d in violations(all_rows, METERS + [30]))
    assert not [v for v in violations(all_rows, METERS + [30]) if v[0] == 30]


def test_a_different_selection_needs_replace_and_replace_is_reproducible(cli, engine, panoramas_only):
    first = ingest_buffers(meters=[100, 50])
    rows = stored(engine)
    res = cli("ingest", "buffers", "--meters", 100, 50, "--origin", "59.3326,18.0649")
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    assert lines[0].startswith(f"Error: buffer 100 m: an earlier selection stored {first.buffers[0].kept} locations, "
                               "this one keeps ")
    assert lines[1] == "Hint: use --replace to delete the earlier selection of these buffers and store the new one"
    assert stored(engine) == rows
    res = cli("ingest", "buffers", "--meters", 100, 50, "--origin", "59.3326,18.0649", "--replace")
    assert res.exit_code == 0 and res.stdout.count(", replaced") == 2
    moved = stored(engine)
    assert moved != rows and violations(moved, [100, 50]) == []
    assert [r.id for r in moved] == list(range(len(moved)))  # ids restart after the largest id left
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO capture_jobs (location_id, backend) VALUES (:id, 'static')"),
                     {"id": moved[0].id})
    with pytest.raises(InputError, match=r"^buffer 100 m: 1 selected locations already have images or capture jobs"):
        ingest_buffers(meters=[100, 50], replace=True)
    assert stored(engine) == moved


def test_bad_buffer_options(cli, engine):
    res = cli("ingest", "buffers", "--origin", "north", "--meters", 100)
    assert res.exit_code == 1 and res.stderr.splitlines()[0] == "Error: --origin 'north': expected LAT,LNG, e.g. 59.3249,18.0694"
    res = cli("ingest", "buffers", "--meters", 100, "--meters=-5")
    assert res.stderr.splitlines()[0] == "Error: --meters -5: buffer distances must be positive metres"
    res = cli("ingest", "buffers", "--meters", 100, 100)
    assert res.stderr.splitlines()[0] == "Error: --meters: each buffer distance may be given once"
    with pytest.raises(InputError, match="split for buffer 100 m: 'training' is not one of train, val, test"):
        ingest_buffers(meters=[100], splits={100.0: "training"})


def test_csv_import_after_a_selection_refuses_clashing_ids(cli, engine, panoramas_only, shared_data):
    ingest_buffers(meters=METERS)
    before = stored(engine)
    res = cli("ingest", "locations", shared_data / "buffers")
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: location id ") and "(source selection), the CSV has " in res.stderr
    assert "Hint: ids of CSV locations must not be reused" in res.stderr
    assert stored(engine) == before and stored(engine, "csv") == []
