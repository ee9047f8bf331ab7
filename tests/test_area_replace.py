"""`geoloc ingest area --replace` and `geoloc demo --reimport` on a real database: the area keeps its id,
its grid points and every paid Street View metadata answer; points outside the new polygon go only as
far as the user asks; a broken file changes nothing; the grid stays one point per cell."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyproj
import pytest
import shapely
import sqlalchemy as sa
from shapely.geometry import box, mapping, shape

from geoloc.collect.grid import ingest_grid
from retrieval_data import first_test_locations

SPACING = 100.0
TO_3006 = pyproj.Transformer.from_crs(4326, 3006, always_xy=True)


def stockholm(shared_data):
    doc = json.loads((shared_data / "Stockholm.geojson").read_text())
    return shapely.union_all([shape(f["geometry"]) for f in doc["features"]])


def smaller_shifted(shared_data):
    """The real Stockholm polygon without its western third and northern quarter: a smaller area whose
    bounding box (hence grid frame) starts further east and further south."""
    area = stockholm(shared_data)
    x0, y0, x1, y1 = area.bounds
    return area.intersection(box(x0 + 0.33 * (x1 - x0), y0, x1, y1 - 0.25 * (y1 - y0)))


def write_geojson(path, geom):
    path.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": mapping(geom)}))
    return path


def table_rows(engine) -> dict[str, list]:
    with engine.connect() as conn:
        return {
            "areas": conn.execute(sa.text(
                "SELECT id, name, ST_AsText(geom), area_m2, source FROM areas ORDER BY id")).all(),
            "grid_points": conn.execute(sa.text(
                "SELECT id, area_id, spacing_m, idx, ST_AsText(geom) FROM grid_points ORDER BY id")).all(),
            "metadata_answers": conn.execute(sa.text("SELECT * FROM metadata_answers ORDER BY grid_point_id")).all(),
        }


def paid_answers(engine, every: int = 5) -> dict[int, tuple[float, float]]:
    """Metadata answers for every EVERYth grid point (OK with a panorama, or ZERO_RESULTS), inserted with
    SQL as the metadata worker stores them; returns {grid point id: (lng, lat)}."""
    with engine.begin() as conn:
        points = conn.execute(sa.text("SELECT id, ST_X(geom), ST_Y(geom) FROM grid_points ORDER BY id")).all()
        chosen = points[::every]
        for n, (pid, lng, lat) in enumerate(chosen):
            pano = None
            if n % 2 == 0:
                pano = f"pano-{pid}"
                conn.execute(sa.text("INSERT INTO panoramas (pano_id, geom) "
                                     "VALUES (:p, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326))"),
                             {"p": pano, "lng": lng, "lat": lat})
            conn.execute(sa.text("INSERT INTO metadata_answers (grid_point_id, status, pano_id) VALUES (:g, :s, :p)"),
                         {"g": pid, "s": "OK" if pano else "ZERO_RESULTS", "p": pano})
    return {pid: (lng, lat) for pid, lng, lat in chosen}


@pytest.fixture
def area_with_answers(cli, engine, shared_data):
    assert cli("ingest", "area", shared_data / "Stockholm.geojson", "--name", "stockholm").exit_code == 0
    grid = ingest_grid("stockholm", SPACING)
    assert grid.total > 2000
    answers = paid_answers(engine)
    with engine.connect() as conn:
        all_points = {r.id: (r.lng, r.lat) for r in conn.execute(sa.text(
            "SELECT id, ST_X(geom) AS lng, ST_Y(geom) AS lat FROM grid_points"))}
    return all_points, answers


def outside(geom, points: dict[int, tuple[float, float]]) -> set[int]:
    """Ids of POINTS not in GEOM, computed with shapely (independently of the SQL)."""
    ids = list(points)
    xy = np.array([points[i] for i in ids])
    inside = shapely.intersects_xy(geom, xy[:, 0], xy[:, 1])
    return {i for i, ok in zip(ids, inside) if not ok}


def frame(geom, spacing: float):
    """(xmin, ymax, ncols, nrows) of GEOM's grid in EPSG:3006, computed with pyproj + shapely."""
    metric = shapely.transform(geom, lambda xy: np.column_stack(TO_3006.transform(xy[:, 0], xy[:, 1])))
    x0, y0, x1, y1 = metric.bounds
    return x0, y1, math.ceil((x1 - x0) / spacing), math.ceil((y1 - y0) / spacing)


def test_replace_keeps_every_answer_and_reports_the_points_outside(cli, engine, shared_data, tmp_path,
                                                                   area_with_answers):
    all_points, answers = area_with_answers
    new = smaller_shifted(shared_data)
    out_all = outside(new, all_points)
    out_answered = out_all & set(answers)
    assert len(out_answered) > 20 and len(set(answers) - out_all) > 20  # answers on both sides
    with engine.connect() as conn:
        area_id = conn.execute(sa.text("SELECT id FROM areas WHERE name = 'stockholm'")).scalar()

    res = cli("ingest", "area", write_geojson(tmp_path / "smaller.geojson", new), "--name", "stockholm", "--replace")
    assert res.exit_code == 0, res.output
    kept = len(all_points) - (len(out_all) - len(out_answered))
    assert res.stdout.splitlines()[1:4] == [
        f"  grid points kept: {kept:,} of {len(all_points):,} (metadata answers kept: {len(answers):,} of "
        f"{len(answers):,})",
        f"  outside the new polygon: {len(out_all) - len(out_answered):,} point(s) without an answer removed",
        f"  outside the new polygon: {len(out_answered):,} point(s) with a paid metadata answer kept "
        "(--delete-answers would delete them and their answers)"]

    rows = table_rows(engine)
    assert [r.id for r in rows["areas"]] == [area_id]  # same area, new polygon
    stored = shapely.from_wkt(rows["areas"][0][2])
    assert stored.symmetric_difference(new).area < 1e-9
    assert {r.grid_point_id for r in rows["metadata_answers"]} == set(answers)  # every paid answer kept
    positions = {r.id: r[4] for r in rows["grid_points"]}
    assert set(positions) == set(all_points) - (out_all - out_answered)
    for pid, (lng, lat) in answers.items():  # the answered points did not move
        assert shapely.from_wkt(positions[pid]).equals_exact(shapely.Point(lng, lat), 1e-9)

    # the grid over the new polygon: kept points sit in their new cells, the missing cells are added
    added = ingest_grid("stockholm", SPACING)
    assert added.added > 0
    x0, y1, ncols, nrows = frame(new, SPACING)
    with engine.connect() as conn:
        grid = conn.execute(sa.text("SELECT id, idx, ST_X(geom) AS lng, ST_Y(geom) AS lat FROM grid_points")).all()
    xs, ys = TO_3006.transform([g.lng for g in grid], [g.lat for g in grid])
    detached = 0
    for g, x, y in zip(grid, xs, ys):
        col, row = math.floor((x - x0) / SPACING), math.floor((y1 - y) / SPACING)
        if 0 <= col < ncols and 0 <= row < nrows:
            assert g.idx == row * ncols + col, (g, col, row)
        else:
            assert g.idx < 0 and g.id in out_answered
            detached += 1
    assert detached > 0
    # every cell whose centre is inside the new polygon has exactly one point
    cols, rows_ = np.meshgrid(np.arange(ncols), np.arange(nrows))
    cx, cy = x0 + (cols.ravel() + 0.5) * SPACING, y1 - (rows_.ravel() + 0.5) * SPACING
    lng, lat = pyproj.Transformer.from_crs(3006, 4326, always_xy=True).transform(cx, cy)
    wanted = set((rows_.ravel() * ncols + cols.ravel())[shapely.intersects_xy(new, lng, lat)].tolist())
    have = [g.idx for g in grid if g.idx >= 0]
    assert len(have) == len(set(have)) and wanted <= set(have)
    assert ingest_grid("stockholm", SPACING).added == 0


def test_delete_answers_removes_the_answered_points_outside(cli, engine, shared_data, tmp_path, area_with_answers):
    all_points, answers = area_with_answers
    new = smaller_shifted(shared_data)
    out_answered = outside(new, all_points) & set(answers)
    res = cli("ingest", "area", write_geojson(tmp_path / "smaller.geojson", new), "--name", "stockholm",
              "--replace", "--delete-answers")
    assert res.exit_code == 0, res.output
    assert (f"  outside the new polygon: {len(out_answered):,} point(s) with a paid metadata answer deleted, "
            "with their answers (--delete-answers)") in res.stdout.splitlines()
    rows = table_rows(engine)
    assert {r.grid_point_id for r in rows["metadata_answers"]} == set(answers) - out_answered
    assert not outside(new, {r.id: shapely.from_wkt(r[4]).coords[0] for r in rows["grid_points"]})


def test_delete_answers_needs_replace(cli, engine, shared_data, area_with_answers):
    before = table_rows(engine)
    res = cli("ingest", "area", shared_data / "Stockholm.geojson", "--name", "other", "--delete-answers")
    assert res.exit_code == 1 and res.stderr == "Error: --delete-answers only applies with --replace\n"
    assert table_rows(engine) == before


def test_broken_geojson_stores_nothing_and_changes_nothing(cli, engine, shared_data, tmp_path, area_with_answers):
    before = table_rows(engine)
    good = (shared_data / "Stockholm.geojson").read_text()
    truncated = tmp_path / "truncated.geojson"
    truncated.write_text(good[: len(good) // 2])
    bowtie = tmp_path / "bowtie.geojson"
    bowtie.write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[18.0, 59.3], [18.1, 59.35], [18.1, 59.3], [18.0, 59.35], [18.0, 59.3]]]}))
    line = tmp_path / "line.geojson"
    line.write_text(json.dumps({"type": "LineString", "coordinates": [[18.0, 59.3], [18.1, 59.35]]}))
    for path, message in [(truncated, "not valid JSON"), (bowtie, "polygon 0 is invalid (Self-intersection"),
                          (line, "geometry 0 is a LineString, expected Polygon or MultiPolygon"),
                          (tmp_path / "missing.geojson", "file not found")]:
        res = cli("ingest", "area", path, "--name", "stockholm", "--replace", "--delete-answers")
        assert res.exit_code == 1
        assert res.stderr.startswith(f"Error: {path}: {message}"), res.stderr
        assert table_rows(engine) == before


def test_already_exists_hint_says_what_replace_keeps(cli, shared_data, area_with_answers):
    res = cli("ingest", "area", shared_data / "Stockholm.geojson", "--name", "stockholm")
    assert res.exit_code == 1
    assert res.stderr == ("Error: area 'stockholm' already exists\n"
                          "Hint: use --replace to give it the new polygon (its grid points and metadata answers "
                          "are kept)\n")


def test_demo_reimport_keeps_the_paid_answers(cli, engine, shared_data, tmp_path):
    """The demo's area/grid and image stages with --reimport, on a small real piece of Stockholm."""
    from geoloc import demo
    from geoloc.collect.locations import ingest_locations

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    area = stockholm(shared_data)
    x0, y0, x1, y1 = area.bounds
    piece = box(x0, y0, x0 + 0.2 * (x1 - x0), y0 + 0.3 * (y1 - y0))
    write_geojson(data / "Stockholm.geojson", area.intersection(piece))
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    [(loc, files)] = first_test_locations(shared_data, 1).items()
    folder = data / "images" / "Cropped_Test_v1_buffer_75" / "000"
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, folder / f.name)

    first = demo._area_and_grid(data, reimport=False)
    assert "grid points" in first
    answers = paid_answers(engine, every=3)
    assert demo._images(data, reimport=False).startswith(f"{len(files)} imported")
    before = table_rows(engine)
    assert len(before["metadata_answers"]) == len(answers) > 100

    note = demo._area_and_grid(data, reimport=True)
    assert note.startswith(f"area replaced: grid points kept: {len(before['grid_points']):,} of "
                           f"{len(before['grid_points']):,} (metadata answers kept: {len(answers):,} of")
    demo._images(data, reimport=True)
    after = table_rows(engine)
    assert after["metadata_answers"] == before["metadata_answers"]
    assert after["grid_points"] == before["grid_points"]
    assert [r.id for r in after["areas"]] == [r.id for r in before["areas"]]
