"""The top geo-cells on the maps: the JSON API of `geoloc serve` (over loopback), its Leaflet page in real
Chromium, and the folium page of `geoloc search --map`.

The database is a small real subset of Test v1 with a partition built from its images and the tiny
untrained model given (randomly initialised) cell heads through the library (cell_heads.build_heads and
store_heads): the searches, the SQL and the pages are the real ones; only the heads' weights are not
trained, which the maps do not care about.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa

from retrieval_data import TINY_MODEL, subset_fixture
from test_serve import ThreadServer
from test_serve_browser import _wait_state, browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # embeds with a CNN, serves it and starts Chromium

subset_db = subset_fixture(n_locations=10)
PARTITION = "subset"


@pytest.fixture(scope="module")
def cells_db(subset_db):
    """The subset with partition PARTITION (2 levels) and cell heads on the tiny model."""
    from geoloc.cells.partition import build_partition
    from geoloc.db.engine import begin
    from geoloc.model.cell_heads import CellLabels, build_heads, load_partition_classes, store_heads
    from geoloc.db.models import get_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOLOC_DATABASE_URL", subset_db.url)
        build_partition(PARTITION, img_min=5, img_max=120, levels=2, ratio=3, split="test")
        with begin() as conn:
            pid, cell_ids = load_partition_classes(conn, PARTITION)
            model = get_model(conn, TINY_MODEL)
            heads = build_heads(model.dim, [len(ids) for ids in cell_ids])
            labels = CellLabels(pid, PARTITION, cell_ids, np.zeros((0, len(cell_ids)), np.int32))
            store_heads(conn, model.id, labels, heads)
    with sa.create_engine(subset_db.url).connect() as conn:
        sizes = conn.execute(sa.text("SELECT level, count(*) FROM cells GROUP BY level ORDER BY level")).all()
    assert len(sizes) == 2 and sizes[1][1] >= 5, sizes  # enough finest cells for a top 5
    return subset_db


@pytest.fixture(scope="module")
def server(cells_db):
    from geoloc.serve import create_app

    with ThreadServer(create_app(model=TINY_MODEL, url=cells_db.url)) as srv:
        yield srv.url


def _photo(db, shared_data, offset: int = 3) -> Path:
    with sa.create_engine(db.url).connect() as conn:
        name = conn.execute(sa.text("SELECT path FROM images WHERE location_id = :l ORDER BY id LIMIT 1"),
                            {"l": db.location_ids[offset]}).scalar_one()
    return next((shared_data / "images" / "Cropped_Test_v1_buffer_75").rglob(Path(name).name))


def _search(url: str, photo: Path, **params) -> requests.Response:
    with open(photo, "rb") as f:
        return requests.post(f"{url}/api/search", params=params, files={"file": (photo.name, f, "image/jpeg")},
                             timeout=120)


def _assigned_points(db, cell_id: int) -> list[tuple[float, float]]:
    """(lng, lat) of every location assigned to CELL_ID (location_cells)."""
    with sa.create_engine(db.url).connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT ST_X(l.geom), ST_Y(l.geom) FROM location_cells lc JOIN locations l ON l.id = lc.location_id"
            " WHERE lc.cell_id = :c"), {"c": cell_id}).all()
    return [tuple(r) for r in rows]


def test_a_search_with_cell_heads_returns_the_top_cells_with_their_polygons(server, cells_db, shared_data):
    from shapely.geometry import Point, shape

    res = _search(server, _photo(cells_db, shared_data), k=5)
    assert res.status_code == 200, res.text
    out = res.json()
    cells = out["cells"]
    assert len(cells) == 5 and [c["rank"] for c in cells] == [1, 2, 3, 4, 5]
    probs = [c["probability"] for c in cells]
    assert probs == sorted(probs, reverse=True) and 0 < probs[-1] and sum(probs) <= 1 + 1e-9
    with sa.create_engine(cells_db.url).connect() as conn:
        finest = conn.execute(sa.text("SELECT max(level) FROM cells")).scalar_one()
        h3 = dict(conn.execute(sa.text("SELECT id, h3 FROM cells")).all())
    for c in cells:
        assert c["level"] == finest and c["h3"] == h3[c["cell_id"]]
        poly = shape(c["geometry"])
        assert c["geometry"]["type"] == "MultiPolygon" and poly.is_valid and poly.area > 0
        assert poly.contains(Point(c["lng"], c["lat"])), c["cell_id"]  # the centroid of its images
        points = _assigned_points(cells_db, c["cell_id"])
        assert points and all(poly.covers(Point(p)) for p in points)
    assert len(out["neighbours"]) == 5 and out["top_cells"] == 0
    assert out["hybrid"]["source"] == "consensus of neighbours (no cell restriction)"


def test_top_cells_restricts_the_neighbours_to_the_best_cells_polygons(server, cells_db, shared_data):
    from shapely.geometry import Point, shape

    res = _search(server, _photo(cells_db, shared_data), k=5, top_cells=2, cell_level=0)
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["top_cells"] == 2 and {c["level"] for c in out["cells"]} == {0}
    allowed = [shape(c["geometry"]) for c in out["cells"][:2]]
    assert out["neighbours"]
    for n in out["neighbours"]:
        assert any(p.covers(Point(n["lng"], n["lat"])) for p in allowed), n


def test_a_model_without_cell_heads_has_no_cells(server, cells_db, shared_data):
    photo = _photo(cells_db, shared_data)
    plain = _search(server, photo, model="thumbnail-16", k=3)
    assert plain.status_code == 200 and "cells" not in plain.json()
    refused = _search(server, photo, model="thumbnail-16", top_cells=2)
    assert refused.status_code == 422
    assert refused.json()["error"] == \
        "model 'thumbnail-16' has no cell heads: top_cells and cell_level need them"
    models = {m["name"]: m["cells"] for m in requests.get(f"{server}/api/models", timeout=10).json()}
    assert models == {TINY_MODEL: True, "thumbnail-16": False}
    doc = requests.get(f"{server}/openapi.json", timeout=10).json()
    described = doc["paths"]["/api/search"]["post"]["description"]
    assert "`cells`" in described and "GeoJSON MultiPolygon" in described


def _scores(neighbours: list[dict]) -> list[float]:
    from geoloc.retrieval.rerank import DEFAULT_WEIGHT

    return [1.0 - n["distance"] + DEFAULT_WEIGHT * n["inliers"] for n in neighbours]


def _consensus_location(neighbours: list[dict]) -> int:
    """The location with the most similarity among NEIGHBOURS (the consensus vote, by hand)."""
    votes: dict[int, float] = {}
    for n in neighbours:
        votes[n["location_id"]] = votes.get(n["location_id"], 0.0) + 1.0 - n["distance"]
    return max(votes, key=votes.get)


def test_rerank_reorders_the_hybrid_neighbours_and_its_prediction_follows(server, cells_db, shared_data):
    from shapely.geometry import Point, shape

    photo = _photo(cells_db, shared_data)
    plain = _search(server, photo, k=10, top_cells=2, cell_level=0)
    res = _search(server, photo, k=5, top_cells=2, cell_level=0, rerank="true")
    assert plain.status_code == 200 and res.status_code == 200, res.text
    before, out = plain.json(), res.json()
    assert [c["cell_id"] for c in out["cells"]] == [c["cell_id"] for c in before["cells"]]
    got = out["neighbours"]
    assert [n["rank"] for n in got] == list(range(1, len(got) + 1)) and got
    assert all(isinstance(n["inliers"], int) for n in got)
    assert _scores(got) == sorted(_scores(got), reverse=True)  # similarity + weight x inliers, best first
    assert {n["image_id"] for n in got} <= {n["image_id"] for n in before["neighbours"]}
    allowed = [shape(c["geometry"]) for c in out["cells"][:2]]
    assert all(any(p.covers(Point(n["lng"], n["lat"])) for p in allowed) for n in got)  # still inside the cells
    assert out["hybrid"]["source"] == "consensus of cell neighbours"
    assert out["hybrid"]["location_id"] == _consensus_location(got)  # the vote of the re-ranked five


def test_search_rerank_with_cells_is_the_hybrid_search_re_ranked(cells_db, shared_data, cli, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATABASE_URL", cells_db.url)
    photo = _photo(cells_db, shared_data)
    res = cli("search", photo, "--model", TINY_MODEL, "-k", "5", "--rerank", "--json")
    assert res.exit_code == 0, res.output
    [out] = json.loads(res.stdout)
    assert len(out["cells"]) == 5 and out["hybrid"]["source"] == "consensus of neighbours (no cell restriction)"
    got = out["neighbours"]
    assert len(got) == 5 and all(isinstance(n["inliers"], int) for n in got)
    assert _scores(got) == sorted(_scores(got), reverse=True)
    assert out["hybrid"]["location_id"] == _consensus_location(got)
    table = cli("search", photo, "--model", TINY_MODEL, "-k", "3", "--rerank")
    assert table.exit_code == 0, table.output
    assert "inliers" in table.stdout.splitlines()[1] and "hybrid prediction:" in table.stdout


def test_the_page_draws_the_cell_polygons_after_an_upload(server, cells_db, shared_data, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    _wait_state(browser, "ready")
    browser.find_element(By.ID, "file").send_keys(str(_photo(cells_db, shared_data)))
    assert _wait_state(browser, "done", "error") == "done", browser.find_element(By.ID, "status").text
    paths = browser.find_elements(By.CSS_SELECTOR, "#map path.cell-polygon")
    assert len(paths) == 5
    opacity = [float(p.get_attribute("fill-opacity")) for p in paths]
    assert max(opacity) == pytest.approx(0.58) and min(opacity) >= 0.08  # shaded by probability
    items = browser.find_elements(By.CSS_SELECTOR, "#cell-list li.cell")
    assert len(items) == 5 and items[0].text.startswith("cell ") and "p = " in items[0].text
    assert browser.find_element(By.ID, "cells").is_displayed()
    out_dir = os.environ.get("GEOLOC_SCREENSHOT_DIR")
    if out_dir:  # the page with the cells, for a look (as test_serve_browser does for serve.png)
        browser.save_screenshot(str(Path(out_dir) / "serve_cells.png"))
    # a model without heads clears them
    browser.find_element(By.CSS_SELECTOR, "#model option[value='thumbnail-16']").click()
    browser.execute_script("document.getElementById('model').dispatchEvent(new Event('change'))")
    assert _wait_state(browser, "done", "error") == "done"
    _wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#map path.cell-polygon"))
    assert not browser.find_element(By.ID, "cells").is_displayed()


def _wait_until(driver, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(condition)


def _geojson_features(html: str) -> list[dict]:
    """Every GeoJSON Feature folium added to the page (the data its geo_json_<id>_add calls pass)."""
    decoder, found = json.JSONDecoder(), []
    for m in re.finditer(r"geo_json_\w+_add\((?=\{)", html):
        data, _ = decoder.raw_decode(html, m.end())
        found.extend(data["features"] if data.get("type") == "FeatureCollection" else [data])
    return found


def test_search_map_draws_the_top_cells_polygons(cells_db, shared_data, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATABASE_URL", cells_db.url)
    photo = tmp_path / "query <b>${x}<i>.jpg"
    shutil.copyfile(_photo(cells_db, shared_data), photo)
    out = tmp_path / "map.html"
    res = cli("search", photo, "--model", TINY_MODEL, "--json", "--map", out)
    assert res.exit_code == 0, res.output
    cells = json.loads(res.stdout)[0]["cells"]
    assert len(cells) == 5
    html = out.read_text()
    features = [f for f in _geojson_features(html) if "cell_id" in f.get("properties", {})]
    assert [f["properties"]["cell_id"] for f in features] == [c["cell_id"] for c in cells]
    with sa.create_engine(cells_db.url).connect() as conn:
        for f in features:
            same = conn.execute(sa.text(
                "SELECT ST_HausdorffDistance(geom, ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326)) < 1e-6"
                " FROM cells WHERE id = :c"),
                {"g": json.dumps(f["geometry"]), "c": f["properties"]["cell_id"]}).scalar_one()
            assert same, f["properties"]
    assert html.count('"className": "geoloc-cell"') + html.count("'className': 'geoloc-cell'") >= 1
    assert "<b>${x}<i>" not in html  # the file name is shown as text


def test_search_map_without_cells_has_no_cell_polygons(cells_db, shared_data, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATABASE_URL", cells_db.url)
    out = tmp_path / "plain.html"
    res = cli("search", _photo(cells_db, shared_data), "--model", TINY_MODEL, "--no-cells", "--map", out)
    assert res.exit_code == 0, res.output
    assert not [f for f in _geojson_features(out.read_text()) if "cell_id" in f.get("properties", {})]


def test_the_demo_map_of_a_model_with_cell_heads_draws_each_querys_top_cells(cells_db, tmp_path, monkeypatch):
    from geoloc.demo import _examples

    monkeypatch.setenv("GEOLOC_DATABASE_URL", cells_db.url)
    _, page = _examples(tmp_path, TINY_MODEL, n=2, k=3)
    features = [f for f in _geojson_features(page.read_text()) if "cell_id" in f.get("properties", {})]
    assert [f["properties"]["rank"] for f in features] == [1, 2, 3, 4, 5] * 2
    with sa.create_engine(cells_db.url).connect() as conn:
        finest = conn.execute(sa.text("SELECT max(level) FROM cells")).scalar_one()
    assert {f["properties"]["level"] for f in features} == {finest}
