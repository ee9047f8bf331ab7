"""`geoloc serve`: the JSON API over real HTTP on loopback (uvicorn in a thread), against a real
database with real shared images embedded by the thumbnail baseline and an untrained tiny model."""

from __future__ import annotations

import io
import json
import shutil
import socket
import struct
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa
from PIL import Image

from geoloc.imagefile import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from geoloc.retrieval.baseline import THUMBNAIL_MODEL
from retrieval_data import TINY_MODEL, subset_fixture

subset_db = subset_fixture()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """A real uvicorn server on a free loopback port, run in a thread of the test process."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def db(subset_db):
    """The subset with one evaluation run of the tiny model, and the baseline as best validated model."""
    from geoloc.retrieval.evaluate import evaluate

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOLOC_DATABASE_URL", subset_db.url)
        evaluate(model=TINY_MODEL, split="test", version="v1", k=10)
    engine = sa.create_engine(subset_db.url)
    with engine.begin() as conn:
        # the older model validated better: it must be the default although the tiny one is newer
        conn.execute(sa.text("UPDATE models SET metrics = CAST(:m AS jsonb) WHERE name = :n"),
                     {"m": json.dumps({"val_recall@1": 0.3}), "n": THUMBNAIL_MODEL})
        conn.execute(sa.text("UPDATE models SET metrics = CAST(:m AS jsonb) WHERE name = :n"),
                     {"m": json.dumps({"val_recall@1": 0.1}), "n": TINY_MODEL})
    engine.dispose()
    return subset_db


@pytest.fixture(scope="module")
def server(db):
    from geoloc.serve import create_app

    with ThreadServer(create_app(url=db.url)) as srv:
        yield srv


@pytest.fixture
def api(server, db, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATABASE_URL", db.url)
    return server.url


def _query(url: str, location_id: int, heading: int = 0):
    with sa.create_engine(url).connect() as conn:
        return conn.execute(sa.text(
            "SELECT i.id, i.root || '/' || i.path AS file, ST_Y(l.geom) AS lat, ST_X(l.geom) AS lng "
            "FROM images i JOIN locations l ON l.id = i.location_id "
            "WHERE i.location_id = :l AND i.heading = :h ORDER BY i.time_index LIMIT 1"),
            {"l": location_id, "h": heading}).one()


def _upload(api: str, name: str, data: bytes, **params) -> requests.Response:
    return requests.post(f"{api}/api/search", params=params, files={"file": (name, data)}, timeout=60)


# ------------------------------------------------------------------------------------ searching

@pytest.mark.parametrize("model, options", [
    (TINY_MODEL, {}),
    (THUMBNAIL_MODEL, {}),
    (TINY_MODEL, {"near": "LOC3", "within": "400"}),
    (THUMBNAIL_MODEL, {"area": "stockholm", "split": "test", "k": "8"}),
])
def test_an_upload_gets_the_same_json_as_geoloc_search(api, db, cli, model, options):
    img = _query(db.url, db.location_ids[1], heading=2)
    if options.get("near") == "LOC3":
        centre = _query(db.url, db.location_ids[3])
        options = {**options, "near": f"{centre.lat},{centre.lng}"}
    res = _upload(api, "my photo.jpg", Path(img.file).read_bytes(), model=model, **options)
    assert res.status_code == 200, res.text
    got = res.json()
    args = [arg for key, value in options.items() for arg in ("-k" if key == "k" else f"--{key}", value)]
    out = cli("search", img.file, "--model", model, "--json", *args)
    assert out.exit_code == 0, out.output
    [expected] = json.loads(out.stdout)
    assert got["image"] == "my photo.jpg"
    assert len(got["neighbours"]) == int(options.get("k", 5))
    for a, b in zip(got["neighbours"], expected["neighbours"]):
        assert a.pop("distance") == pytest.approx(b.pop("distance"), abs=1e-5)
        assert a == b
    assert got["best"]["location_id"] == expected["best"]["location_id"]
    assert got["consensus"]["location_id"] == expected["consensus"]["location_id"]
    assert got["consensus"]["count"] == expected["consensus"]["count"]
    if not options:
        assert got["neighbours"][0]["image_id"] == img.id  # the database image itself, at distance 0


def test_the_default_model_is_the_best_validated_one(api):
    res = requests.get(f"{api}/api/models", timeout=10)
    assert res.status_code == 200
    models = res.json()
    assert [m["name"] for m in models] == [THUMBNAIL_MODEL, TINY_MODEL]
    assert [m["default"] for m in models] == [True, False]
    assert models[0]["recall_at_1"] == 0.3 and models[0]["embeddings"] > 0


def test_a_random_query_is_searched_without_itself(api, db):
    res = requests.get(f"{api}/api/random-query", params={"split": "test"}, timeout=10)
    assert res.status_code == 200, res.text
    q = res.json()
    assert q["is_query"] is True and q["split"] == "test" and q["location_id"] in db.location_ids
    res = requests.get(f"{api}/api/images/{q['image_id']}/search", params={"model": TINY_MODEL, "k": 6}, timeout=60)
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["query"] == q
    assert [n["rank"] for n in out["neighbours"]] == [1, 2, 3, 4, 5, 6]
    assert q["image_id"] not in [n["image_id"] for n in out["neighbours"]]
    with sa.create_engine(db.url).connect() as conn:
        others = conn.execute(sa.text("SELECT count(*) FROM images WHERE location_id = :l AND id <> :i"),
                              {"l": q["location_id"], "i": q["image_id"]}).scalar()
    assert others > 0


def test_areas_are_geojson_from_postgis(api):
    res = requests.get(f"{api}/api/areas", timeout=10)
    assert res.status_code == 200
    fc = res.json()
    assert fc["type"] == "FeatureCollection"
    [area] = fc["features"]
    assert area["properties"]["name"] == "stockholm"
    assert area["geometry"]["type"] == "MultiPolygon"
    lng, lat = area["geometry"]["coordinates"][0][0][0]
    assert 17.5 < lng < 18.5 and 59 < lat < 59.7


def test_evaluation_runs_and_their_predictions_worst_first(api, db):
    runs = requests.get(f"{api}/api/eval-runs", timeout=10).json()
    tiny = [r for r in runs if r["model"] == TINY_MODEL]
    assert len(tiny) == 1 and tiny[0]["split"] == "test" and tiny[0]["predictions"] > 0
    run_id = tiny[0]["id"]
    fc = requests.get(f"{api}/api/eval-runs/{run_id}/predictions", timeout=10).json()
    with sa.create_engine(db.url).connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT p.query_image_id, p.top1_error_m, ST_X(p.query_geom), ST_Y(p.query_geom) "
            "FROM eval_predictions p WHERE run_id = :r"), {"r": run_id}).all()
    assert len(fc["features"]) == len(stored) == tiny[0]["predictions"]
    errors = [f["properties"]["error_m"] for f in fc["features"]]
    assert errors == sorted(errors, reverse=True) and errors[0] == pytest.approx(max(s[1] for s in stored), abs=0.1)
    truth = {s[0]: (s[2], s[3]) for s in stored}
    for f in fc["features"]:
        assert f["geometry"]["type"] == "LineString"
        assert f["geometry"]["coordinates"][0] == pytest.approx(truth[f["properties"]["query_image_id"]], abs=1e-6)
    missing = requests.get(f"{api}/api/eval-runs/999999/predictions", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"] == "evaluation run 999999 not found"


def test_thumbnails_only_for_files_the_images_table_names(api, db):
    img = _query(db.url, db.location_ids[0])
    res = requests.get(f"{api}/api/images/{img.id}/thumbnail", timeout=10)
    assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(res.content)) as im:
        assert im.format == "JPEG" and max(im.size) == 160
    for path, status in [("/api/images/999999/thumbnail", 404), ("/api/images/abc/thumbnail", 422),
                         ("/api/images/..%2F..%2Fetc%2Fpasswd/thumbnail", 404),
                         ("/static/..%2F..%2F..%2Fetc%2Fpasswd", 404), ("/static/../app.py", 404)]:
        res = requests.get(api + path, timeout=10)
        assert res.status_code == status, path
        assert res.headers["content-type"] == "application/json" and "error" in res.json()
        assert "root:" not in res.text


def test_the_page_and_leaflet_are_served_locally(api):
    page = requests.get(api + "/", timeout=10)
    assert page.status_code == 200 and "<title>geoloc" in page.text
    assert 'src="/static/leaflet/leaflet.js"' in page.text and "unpkg" not in page.text and "cdn" not in page.text
    leaflet = requests.get(api + "/static/leaflet/leaflet.js", timeout=10)
    assert leaflet.status_code == 200 and "Leaflet" in leaflet.text[:500]
    docs = requests.get(api + "/openapi.json", timeout=10).json()
    assert {"/api/search", "/api/models", "/api/areas", "/api/eval-runs",
            "/api/images/{image_id}/thumbnail"} <= set(docs["paths"])
    assert "multipart/form-data" in docs["paths"]["/api/search"]["post"]["requestBody"]["content"]


def test_an_upload_larger_than_a_spool_stays_in_memory(api, monkeypatch):
    """Starlette's own form parser spools files over 1 MB to a temporary file; ours must not."""
    made = []
    real = tempfile.TemporaryFile

    def recording(*args, **kwargs):
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    pixels = np.random.default_rng(0).integers(0, 256, (700, 1000, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=0)
    assert len(buf.getvalue()) > 2_000_000
    res = _upload(api, "noise.png", buf.getvalue(), model=THUMBNAIL_MODEL)
    assert res.status_code == 200, res.text
    assert len(res.json()["neighbours"]) == 5
    assert made == []


def test_rerank_puts_the_photographed_scene_first_and_reports_inliers(api, db):
    img = _query(db.url, db.location_ids[3], heading=2)
    buf = io.BytesIO()
    with Image.open(img.file) as im:  # the central 80 % of a database image: the same scene, a step closer
        w, h = im.size
        im.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w, h)).save(buf, "JPEG", quality=90)
    plain = _upload(api, "photo.jpg", buf.getvalue(), model=THUMBNAIL_MODEL, k=10)
    assert plain.status_code == 200, plain.text
    plain_ids = [n["image_id"] for n in plain.json()["neighbours"]]
    assert img.id in plain_ids and all(n["inliers"] is None for n in plain.json()["neighbours"])
    res = _upload(api, "photo.jpg", buf.getvalue(), model=THUMBNAIL_MODEL, k=3, rerank="true")
    assert res.status_code == 200, res.text
    got = res.json()["neighbours"]
    assert [n["rank"] for n in got] == [1, 2, 3] and {n["image_id"] for n in got} <= set(plain_ids)
    assert got[0]["image_id"] == img.id and got[0]["inliers"] > max(n["inliers"] for n in got[1:])
    # a database image, left out of its own neighbours
    res = requests.get(f"{api}/api/images/{img.id}/search", params={"model": THUMBNAIL_MODEL, "rerank": "true"},
                       timeout=60)
    assert res.status_code == 200, res.text
    got = res.json()["neighbours"]
    assert len(got) == 5 and img.id not in [n["image_id"] for n in got]
    assert all(isinstance(n["inliers"], int) for n in got)
    # a database image whose file is gone is named by its id, never by its path
    moved = Path(tempfile.mkdtemp()) / "away.jpg"
    shutil.move(img.file, moved)
    try:
        res = _upload(api, "photo.jpg", buf.getvalue(), model=THUMBNAIL_MODEL, k=3, rerank="true")
    finally:
        shutil.move(moved, img.file)
    assert res.status_code == 404
    assert res.json()["error"] == f"image {img.id}: its file is missing or unreadable"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_photos_are_searched_too(api, db, fmt):
    img = _query(db.url, db.location_ids[4], heading=3)
    buf = io.BytesIO()
    with Image.open(img.file) as im:
        im.save(buf, fmt, lossless=True) if fmt == "WEBP" else im.save(buf, fmt)
    res = _upload(api, f"photo.{fmt.lower()}", buf.getvalue(), model=TINY_MODEL)
    assert res.status_code == 200, res.text
    out = res.json()
    assert len(out["neighbours"]) == 5 and out["image"] == f"photo.{fmt.lower()}"
    assert out["neighbours"][0]["location_id"] == db.location_ids[4]


def test_the_server_reads_through_read_only_transactions(server, db):
    from geoloc.serve.service import Service

    service = Service(db.url, TINY_MODEL)
    with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
        with service.begin() as conn:
            conn.execute(sa.text("CREATE TABLE written_by_the_page (x int)"))


# ------------------------------------------------------------------------------------ refusals

def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header announces WIDTH x HEIGHT pixels (and holds none)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture
def good_jpeg(db) -> bytes:
    return Path(_query(db.url, db.location_ids[0]).file).read_bytes()


def test_bad_uploads_are_4xx_json(api, good_jpeg):
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    cases = [
        ("empty.jpg", b"", 422, "empty.jpg: empty file"),
        ("notes.jpg", b"not a picture at all", 415, "notes.jpg: not a JPEG, PNG or WebP image"),
        ("anim.gif", gif.getvalue(), 415, "anim.gif: not a JPEG, PNG or WebP image"),
        ("cut.jpg", good_jpeg[:2000], 422, None),
        ("bomb.png", _png_header(10_000, 10_000), 413,
         f"bomb.png: image is 10000 x 10000 pixels, more than the limit of {MAX_IMAGE_PIXELS:,} "
         "(a decompression bomb or a huge image)"),
        ("../../etc/passwd.jpg", b"", 422, "passwd.jpg: empty file"),
    ]
    for name, data, status, message in cases:
        res = _upload(api, name, data)
        assert res.status_code == status, (name, res.text)
        body = res.json()
        if message is None:
            assert body["error"].startswith(f"{name}: not a readable image ("), body
        else:
            assert body["error"] == message
        assert "Traceback" not in res.text


def test_a_file_over_the_byte_limit_is_413(api):
    data = b"\xff\xd8\xff" + bytes(MAX_IMAGE_BYTES - 2)
    res = _upload(api, "huge.jpg", data)
    assert res.status_code == 413
    assert res.json()["error"] == f"huge.jpg: {MAX_IMAGE_BYTES + 1:,} bytes, more than the limit of {MAX_IMAGE_BYTES:,}"


def test_a_body_announced_over_the_limit_is_refused_before_it_is_read(api, server):
    from geoloc.serve.upload import BODY_LIMIT

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  + f"Content-Length: {BODY_LIMIT + 1}\r\n\r\n".encode() + b"--b\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["error"] == f"request body: {BODY_LIMIT + 1:,} bytes, more than the limit of {BODY_LIMIT:,}"


def test_requests_without_a_photo_or_with_bad_options(api, good_jpeg):
    res = requests.post(f"{api}/api/search", json={"file": "x"}, timeout=10)
    assert res.status_code == 415
    assert res.json()["error"] == ("request body: expected multipart/form-data with the photo in field 'file', "
                                   "got 'application/json'")
    res = requests.post(f"{api}/api/search", files={"photo": ("a.jpg", good_jpeg)}, timeout=10)
    assert res.status_code == 422
    assert res.json()["error"].startswith("request body: no file in field 'file'")
    for params, status, message in [
        ({"near": "59.3,abc", "within": "100"}, 422,
         "--near '59.3,abc': expected LAT,LNG in degrees, e.g. 59.3251,18.0711"),
        ({"near": "59.3,18.0"}, 422, "--near and --within go together: give both, e.g. --near 59.3251,18.0711 --within 500"),
        ({"k": "0"}, 422, "k: Input should be greater than or equal to 1"),
        ({"split": "nope"}, 422, "split: Input should be 'train', 'val' or 'test'"),
        ({"model": "nope"}, 404, "model 'nope' not found"),
        ({"area": "atlantis"}, 404, "area 'atlantis' not found"),
    ]:
        res = _upload(api, "a.jpg", good_jpeg, **params)
        assert res.status_code == status, (params, res.text)
        assert res.json()["error"] == message


# ------------------------------------------------------------------------------------ the command

def test_serve_help_has_an_example(cli):
    res = cli("serve", "--help")
    assert res.exit_code == 0
    assert "Example: geoloc serve" in res.output and "--workers" in res.output and "--model" in res.output


def test_serve_without_a_searchable_model_is_a_one_line_error(cli, db_url):
    res = cli("serve", "--port", str(free_port()))
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: no ready model with embeddings to search with\nHint: train one")


def test_serve_on_a_taken_port_is_a_one_line_error(cli, db_url):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = cli("serve", "--port", str(port))
    assert res.exit_code == 1
    assert res.stderr == (f"Error: 127.0.0.1:{port}: cannot listen (address already in use)\n"
                          "Hint: choose another --port, or stop what is using it\n")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_an_unknown_model_fails_before_listening(cli, db_url, workers):
    res = cli("serve", "--port", str(free_port()), "--model", "nope", "--workers", workers)
    assert res.exit_code == 1
    assert res.stderr == "Error: model 'nope' not found\nHint: see 'geoloc models list'\n"
