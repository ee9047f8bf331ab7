"""`geoloc search`: one SQL query per photo, the expected neighbours, region filters that still return
k rows, the HNSW index in the plan, pictures, and exact error messages."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from geoloc.db.engine import begin
from geoloc.retrieval import search as S
from geoloc.retrieval.baseline import THUMBNAIL_MODEL
from retrieval_data import TINY_MODEL, subset, subset_fixture  # noqa: F401

subset_db = subset_fixture()


def _image(engine, location_id: int, heading: int = 0, time_index: int = 1):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT i.id, i.root || '/' || i.path AS file, ST_Y(l.geom) AS lat, ST_X(l.geom) AS lng "
            "FROM images i JOIN locations l ON l.id = i.location_id "
            "WHERE i.location_id = :l AND i.heading = :h ORDER BY abs(i.time_index - :t) LIMIT 1"),
            {"l": location_id, "h": heading, "t": time_index}).one()


def _model_id(engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM models WHERE name = :n"), {"n": name}).scalar_one()


@pytest.fixture
def engine(subset):
    from geoloc.db.engine import get_engine

    return get_engine(subset.url)


@pytest.mark.parametrize("model", [THUMBNAIL_MODEL, TINY_MODEL])
def test_an_image_of_the_database_finds_itself_first_at_distance_zero(cli, subset, engine, model):
    img = _image(engine, subset.location_ids[2], heading=1)
    res = cli("search", img.file, "--model", model, "-k", "5", "--json")
    assert res.exit_code == 0, res.output
    [out] = json.loads(res.stdout)
    first = out["neighbours"][0]
    assert first["image_id"] == img.id and first["file"] == img.file
    assert first["distance"] == pytest.approx(0.0, abs=1e-5)
    assert first["location_id"] == subset.location_ids[2]
    assert out["best"] == {"location_id": subset.location_ids[2], "lat": img.lat, "lng": img.lng,
                           "distance": first["distance"]}
    assert [n["rank"] for n in out["neighbours"]] == [1, 2, 3, 4, 5]
    distances = [n["distance"] for n in out["neighbours"]]
    assert distances == sorted(distances)


def _at_distance(q: np.ndarray, distance: float, seed: int) -> np.ndarray:
    """A unit vector at cosine distance DISTANCE from unit vector Q."""
    u = np.random.default_rng(seed).normal(size=q.shape)
    u -= (u @ q) * q
    u /= np.linalg.norm(u)
    return (1 - distance) * q + np.sqrt(1 - (1 - distance) ** 2) * u


def test_the_consensus_is_the_location_with_the_largest_summed_similarity(cli, subset, engine):
    """Four neighbours made by hand around the query's thumbnail: the best match (distance 0.1) lies at
    location A, two look-alikes (0.2, 0.3) at B, one (0.6) at C. Votes: A 0.9, B 0.8 + 0.7 = 1.5,
    C 0.4, so the prediction is B (at B's coordinates) while the best match stays A."""
    from geoloc.retrieval.baseline import thumbnail_vector

    query = _image(engine, subset.location_ids[0])
    a, b1, b2, c = (_image(engine, subset.location_ids[i], heading=h) for i, h in ((1, 0), (2, 0), (2, 1), (3, 0)))
    q = thumbnail_vector(Path(query.file)).astype(np.float64)
    made = [(a, 0.1), (b1, 0.2), (b2, 0.3), (c, 0.6)]
    with begin() as conn:
        model_id = conn.execute(sa.text(
            "INSERT INTO models (name, backbone, dim, input_size, status) "
            "VALUES ('votes', 'thumbnail', 768, 16, 'ready') RETURNING id")).scalar_one()
        for seed, (img, d) in enumerate(made):
            v = _at_distance(q, d, seed)
            conn.execute(sa.text("INSERT INTO embeddings (model_id, image_id, embedding) "
                                 "VALUES (:m, :i, CAST(:v AS vector))"),
                         {"m": model_id, "i": img.id, "v": "[" + ",".join(repr(float(x)) for x in v) + "]"})
    try:
        res = cli("search", query.file, "--model", "votes", "-k", "4", "--json")
    finally:
        with begin() as conn:
            conn.execute(sa.text("DELETE FROM embeddings WHERE model_id = :m"), {"m": model_id})
            conn.execute(sa.text("DELETE FROM models WHERE id = :m"), {"m": model_id})
    assert res.exit_code == 0, res.output
    [out] = json.loads(res.stdout)
    assert [n["image_id"] for n in out["neighbours"]] == [a.id, b1.id, b2.id, c.id]
    assert [n["distance"] for n in out["neighbours"]] == pytest.approx([0.1, 0.2, 0.3, 0.6], abs=1e-4)
    assert out["best"]["location_id"] == subset.location_ids[1]
    assert out["consensus"] == {"location_id": subset.location_ids[2], "lat": b1.lat, "lng": b1.lng,
                                "votes": pytest.approx(1.5, abs=1e-4), "count": 2, "of": 4}


def test_thumbnail_neighbours_of_a_time_machine_image_come_from_its_own_place(subset, engine):
    """Other dates of the same place and heading are the nearest thumbnails for most test images."""
    img = _image(engine, subset.location_ids[0], heading=0, time_index=0)
    [res] = S.search([Path(img.file)], THUMBNAIL_MODEL, k=3)
    assert res.best.image_id == img.id
    assert res.consensus.location_id == subset.location_ids[0]
    assert res.consensus.count >= 2


def test_table_output_names_prediction_and_neighbours(cli, subset, engine):
    img = _image(engine, subset.location_ids[1])
    res = cli("search", img.file, "--model", THUMBNAIL_MODEL, "-k", "3")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"{img.file}:"
    assert lines[1].split() == ["rank", "distance", "location", "heading", "month", "lat", "lng", "image"]
    assert lines[2].split()[0] == "1" and lines[2].split()[2] == str(subset.location_ids[1])
    assert lines[5].startswith(f"  best match: location {subset.location_ids[1]} at {img.lat:.6f}, {img.lng:.6f}")
    assert lines[6].startswith("  consensus:  location ")


def _within(engine, lat: float, lng: float, points, metres: float) -> list[float]:
    with engine.connect() as conn:
        return [conn.execute(sa.text(
            "SELECT ST_Distance(ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography, "
            "ST_SetSRID(ST_MakePoint(:plng, :plat), 4326)::geography)"),
            {"lat": lat, "lng": lng, "plat": p["lat"], "plng": p["lng"]}).scalar() for p in points]


@pytest.mark.parametrize("model", [THUMBNAIL_MODEL, TINY_MODEL])
def test_near_filter_returns_k_rows_all_inside_the_radius(cli, subset, engine, model):
    centre = _image(engine, subset.location_ids[3])
    query = _image(engine, subset.location_ids[0])  # its own place lies outside the radius
    with engine.connect() as conn:
        inside = conn.execute(sa.text(
            "SELECT count(*) FROM images i JOIN locations l ON l.id = i.location_id "
            "WHERE ST_DWithin(l.geom::geography, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography, 400)"),
            {"lat": centre.lat, "lng": centre.lng}).scalar()
    k = 12
    assert inside > k
    res = cli("search", query.file, "--model", model, "-k", k, "--json",
              "--near", f"{centre.lat},{centre.lng}", "--within", "400")
    assert res.exit_code == 0, res.output
    [out] = json.loads(res.stdout)
    assert len(out["neighbours"]) == k
    assert max(_within(engine, centre.lat, centre.lng, out["neighbours"], 400)) <= 400
    # the same neighbours as an exact search over the images inside the region
    with engine.connect() as conn:
        exact = conn.execute(sa.text(
            "SELECT e.image_id FROM embeddings e JOIN images i ON i.id = e.image_id "
            "JOIN locations l ON l.id = i.location_id "
            "WHERE e.model_id = :m AND ST_DWithin(l.geom::geography, "
            "ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography, 400) "
            "ORDER BY e.embedding <=> (SELECT embedding FROM embeddings WHERE model_id = :m AND image_id = :q), "
            "e.image_id LIMIT :k"),
            {"m": _model_id(engine, model), "lat": centre.lat, "lng": centre.lng, "q": query.id, "k": k}).scalars().all()
    assert [n["image_id"] for n in out["neighbours"]] == exact


def test_area_filter_returns_k_rows_inside_the_polygon(cli, subset, engine, tmp_path):
    a, b = _image(engine, subset.location_ids[4]), _image(engine, subset.location_ids[5])
    pad = 0.0005
    box = [[min(a.lng, b.lng) - pad, min(a.lat, b.lat) - pad], [max(a.lng, b.lng) + pad, min(a.lat, b.lat) - pad],
           [max(a.lng, b.lng) + pad, max(a.lat, b.lat) + pad], [min(a.lng, b.lng) - pad, max(a.lat, b.lat) + pad]]
    geojson = tmp_path / "box.geojson"
    geojson.write_text(json.dumps({"type": "Polygon", "coordinates": [box + [box[0]]]}))
    assert cli("ingest", "area", geojson, "--name", "box").exit_code == 0
    query = _image(engine, subset.location_ids[0])
    res = cli("search", query.file, "--model", THUMBNAIL_MODEL, "-k", "10", "--area", "box", "--json")
    assert res.exit_code == 0, res.output
    [out] = json.loads(res.stdout)
    assert len(out["neighbours"]) == 10
    with engine.connect() as conn:
        inside = set(conn.execute(sa.text(
            "SELECT l.id FROM locations l JOIN areas a ON ST_Intersects(a.geom, l.geom) WHERE a.name = 'box'")).scalars())
        conn.execute(sa.text("DELETE FROM areas WHERE name = 'box'"))
        conn.commit()
    assert {subset.location_ids[4], subset.location_ids[5]} <= inside
    assert {n["location_id"] for n in out["neighbours"]} <= inside


def test_a_region_with_fewer_images_than_k_returns_what_there_is(subset, engine):
    centre = _image(engine, subset.location_ids[0])
    [res] = S.search([Path(centre.file)], THUMBNAIL_MODEL, k=50, near=(centre.lat, centre.lng), within_m=5)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM images WHERE location_id = :l"),
                         {"l": subset.location_ids[0]}).scalar()
    assert 0 < len(res.neighbours) == n < 50
    assert {x.location_id for x in res.neighbours} == {subset.location_ids[0]}


@pytest.mark.parametrize("region", [S.Region(), S.Region(area="stockholm")])
def test_the_knn_query_uses_the_models_hnsw_index(subset, engine, region):
    """The ORDER BY expression matches the partial index: the planner can take it (seq scans and
    sorts are disabled because on a couple of hundred rows reading the model's rows, by a seq scan or
    the GiST index, and sorting them is cheaper and rightly chosen)."""
    model_id = _model_id(engine, TINY_MODEL)
    with begin() as conn:
        S.set_search_options(conn)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_sort = off")
        plan = "\n".join(S.explain_lines(conn, model_id, 32, np.ones(32, np.float32) / np.sqrt(32), 5, region,
                                         explain=S.EXPLAIN_PLAN))
    assert f"Index Scan using embeddings_hnsw_{model_id} on embeddings" in plan, plan


def test_plot_and_map_are_written(cli, subset, engine, tmp_path):
    img = _image(engine, subset.location_ids[1])
    png, page = tmp_path / "out.png", tmp_path / "out.html"
    res = cli("search", img.file, img.file, "--model", THUMBNAIL_MODEL, "-k", "4", "--plot", png, "--map", page)
    assert res.exit_code == 0, res.output
    assert f"plot written to {png}" in res.stdout and f"map written to {page}" in res.stdout
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 4 * 100 and im.height > 2 * 100
    html = page.read_text()
    assert "leaflet" in html.lower() and f"loc {subset.location_ids[1]}" in html and "data:image/jpeg;base64," in html


# ------------------------------------------------------------------------------------- errors

@pytest.fixture
def bad_files(tmp_path, subset, engine):
    good = Path(_image(engine, subset.location_ids[0]).file)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:2000])
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    return good, truncated, text


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header announces WIDTH x HEIGHT pixels: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_errors_name_the_photo(cli, bad_files, tmp_path):
    good, truncated, text = bad_files
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(10000, 10000))
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as fh:  # sparse: 60 MB on paper, nothing on disk
        fh.truncate(60 * 1024 * 1024)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    link = tmp_path / "link.jpg"
    link.symlink_to(good)
    for path, message in [
            (truncated, "not a readable image (image file is truncated"),
            (text, "not an image (unrecognised file format)"),
            (bomb, "image is 10000 x 10000 pixels, more than the limit of 40,000,000 (a decompression bomb or a huge image)"),
            (huge, "62,914,560 bytes, more than the limit of 52,428,800"),
            (fifo, "is a FIFO, not an image file"),
            (link, "is a symbolic link, not an image file"),
            (tmp_path / "missing.jpg", "file not found"),
            (tmp_path, "is a folder, not an image file")]:
        res = cli("search", good, path, "--model", THUMBNAIL_MODEL)
        assert res.exit_code == 1
        assert res.stderr.startswith(f"Error: {path}: {message}"), res.stderr
        assert res.stderr.count("\n") == 1 and res.stdout == ""


def test_model_without_embeddings_and_unknown_names(cli, bad_files, subset):
    good = bad_files[0]
    with begin() as conn:
        conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                             "VALUES ('empty', 'thumbnail', 768, 16, 'ready')"))
    res = cli("search", good, "--model", "empty")
    assert res.exit_code == 1
    assert res.stderr == "Error: model 'empty' has no embeddings\nHint: run 'geoloc embed --model empty' first\n"
    res = cli("search", good, "--model", "nope")
    assert res.exit_code == 1 and res.stderr.startswith("Error: model 'nope' not found\n")
    res = cli("search", good, "--model", THUMBNAIL_MODEL, "--area", "atlantis")
    assert res.exit_code == 1
    assert res.stderr == ("Error: area 'atlantis' not found\n"
                          "Hint: load it with 'geoloc ingest area FILE --name NAME'\n")


@pytest.mark.parametrize("args, message", [
    (["--near", "59.3,abc", "--within", "100"], "--near '59.3,abc': expected LAT,LNG in degrees, e.g. 59.3251,18.0711"),
    (["--near", "159.3,18.0", "--within", "100"], "--near '159.3,18.0': expected LAT,LNG in degrees, e.g. 59.3251,18.0711"),
    (["--near", "59.3,18.0"], "--near and --within go together: give both, e.g. --near 59.3251,18.0711 --within 500"),
    (["--near", "59.3,18.0", "--within", "0"], "--within 0: must be a positive number of metres"),
    (["--area", "stockholm", "--within", "10"], "--area cannot be combined with --near/--within: choose one region"),
    (["-k", "0"], "-k 0: must be between 1 and 1000"),
    (["--plot", "out.jpg"], "--plot out.jpg: the file name must end in .png"),
    (["--map", "out.png"], "--map out.png: the file name must end in .html"),
])
def test_bad_options_are_one_line_errors(cli, bad_files, args, message):
    res = cli("search", bad_files[0], "--model", THUMBNAIL_MODEL, *args)
    assert res.exit_code == 1
    assert res.stderr == f"Error: {message}\n"


@pytest.mark.parametrize("value", ["vector(256); DROP TABLE images", "halfvec(256)--", "x y", "'a'", 1.5, None])
def test_a_statement_placeholder_takes_only_an_identifier_or_a_number(value):
    """The vector type of knn.sql is filled into the text (a type modifier cannot be bound); nothing
    else may be."""
    from geoloc.db import sqlfiles

    assert "halfvec(256)" in sqlfiles.source("search/knn.sql", vtype="halfvec(256)")
    assert "{vtype}" not in sqlfiles.source("search/knn.sql", vtype="halfvec(256)")
    with pytest.raises(ValueError, match="must be an identifier such as vector"):
        sqlfiles.text("search/knn.sql", vtype=value)
    with pytest.raises(ValueError, match="no placeholder {htype}"):
        sqlfiles.text("search/knn.sql", vtype="vector(8)", htype="vector(8)")
