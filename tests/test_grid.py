"""`geoloc ingest grid`: the 10 m grid over the real Stockholm polygon, generated in PostGIS."""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest
import shapely
import sqlalchemy as sa
from shapely.geometry import shape

from geoloc.collect.grid import ingest_grid


def independent_grid(geojson_path, spacing: float) -> tuple[int, set[int]]:
    """The same grid computed with shapely + pyproj (vectorised), as a check of the SQL."""
    doc = json.loads(geojson_path.read_text())
    area = shapely.union_all([shape(f["geometry"]) for f in doc["features"]])
    to_3006 = pyproj.Transformer.from_crs(4326, 3006, always_xy=True)
    area = shapely.transform(area, lambda xy: np.column_stack(to_3006.transform(xy[:, 0], xy[:, 1])))
    xmin, ymin, xmax, ymax = area.bounds
    ncols = int(np.ceil((xmax - xmin) / spacing))
    nrows = int(np.ceil((ymax - ymin) / spacing))
    cols, rows = np.meshgrid(np.arange(ncols), np.arange(nrows))
    x = xmin + (cols.ravel() + 0.5) * spacing
    y = ymax - (rows.ravel() + 0.5) * spacing
    shapely.prepare(area)
    inside = shapely.contains_xy(area, x, y)
    idx = (rows.ravel() * ncols + cols.ravel())[inside]
    return int(inside.sum()), set(idx.tolist())


@pytest.fixture
def stockholm(cli, db_url, shared_data):
    assert cli("ingest", "area", shared_data / "Stockholm.geojson", "--name", "stockholm").exit_code == 0
    return shared_data / "Stockholm.geojson"


@pytest.mark.slow
def test_stockholm_10m_grid_matches_independent_count_and_rerun_adds_nothing(cli, engine, stockholm):
    res = cli("ingest", "grid", "--area", "stockholm", "--spacing", "10")
    assert res.exit_code == 0, res.output
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*), count(DISTINCT idx), min(spacing_m), max(spacing_m) "
                                      "FROM grid_points")).one()
        idx = set(conn.execute(sa.text("SELECT idx FROM grid_points")).scalars())
    expected, expected_idx = independent_grid(stockholm, 10.0)
    n = stored[0]
    assert 280_000 < n < 300_000
    assert abs(n - expected) <= 0.01 * expected
    assert stored[1] == n and stored[2] == stored[3] == 10.0
    assert len(idx & expected_idx) >= 0.99 * expected  # same cells, same stable indexes
    assert res.stdout.startswith(f"grid of area 'stockholm' at 10 m: {n} points added, {n} in total (")

    again = ingest_grid("stockholm", 10)
    assert (again.added, again.total) == (0, n)


def test_grid_spacing_is_true_metres_and_is_reproducible(engine, stockholm):
    first = ingest_grid("stockholm", 250)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT idx, ST_AsText(geom) AS wkt FROM grid_points ORDER BY idx")).all()
        # neighbours in a row are exactly 250 m apart in EPSG:3006
        gap = conn.execute(sa.text(
            "SELECT min(ST_Distance(ST_Transform(a.geom, 3006), ST_Transform(b.geom, 3006))) "
            "FROM grid_points a JOIN grid_points b ON b.idx = a.idx + 1")).scalar()
        conn.execute(sa.text("DELETE FROM grid_points"))
        conn.commit()
    assert first.added == first.total == len(rows) == independent_grid(stockholm, 250.0)[0]
    assert gap == pytest.approx(250.0, abs=1e-6)
    assert ingest_grid("stockholm", 250).added == first.total
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT idx, ST_AsText(geom) AS wkt FROM grid_points ORDER BY idx")).all() == rows
    # another spacing is another grid beside it
    second = ingest_grid("stockholm", 500)
    assert second.added == second.total == independent_grid(stockholm, 500.0)[0]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM grid_points")).scalar() == first.total + second.total


def test_grid_errors(cli, stockholm):
    res = cli("ingest", "grid", "--area", "nowhere")
    assert res.exit_code == 1
    assert res.stderr == ("Error: area 'nowhere' does not exist\n"
                          "Hint: load it first: geoloc ingest area FILE.geojson --name nowhere\n")
    res = cli("ingest", "grid", "--area", "stockholm", "--spacing", "0")
    assert res.exit_code == 1 and res.stderr == "Error: --spacing 0: must be a positive number of metres\n"
    res = cli("ingest", "grid", "--area", "stockholm", "--spacing", "0.001")
    assert res.exit_code == 1 and "is too large (at most 2,147,483,647 cells)" in res.stderr
