"""`geoloc ingest capture --backend static-api` against a loopback Street View stub serving real images."""

from __future__ import annotations

import logging
import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from geoloc.collect.locations import ingest_locations
from geoloc.errors import ConfigError, InputError
from geoloc.imagefile import image_file
from geoloc.imagery.backends import open_backend
from geoloc.imagery.capture import ingest_capture

from imagery_server import StreetViewStub, static_api_setup

KEY = "test-key-5f1c0ffee"
LOCS = [1839, 1845, 1848]  # Test v1 locations whose metadata month is their newest image's month


@pytest.fixture
def test_locations(db_url, shared_data, engine):
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, pano_id FROM locations WHERE id = ANY(:ids)"),
                                 {"ids": LOCS + [1856, 1858, 1860]}).all())


@pytest.fixture
def api_env(monkeypatch):
    def use(url: str):
        monkeypatch.setenv("GEOLOC_GOOGLE_API_KEY", KEY)
        monkeypatch.setenv("GEOLOC_STREETVIEW_BASE_URL", url)
    return use


def _mad(a, b) -> float:
    return float(np.abs(np.asarray(Image.open(a).convert("RGB"), dtype=np.float32)
                        - np.asarray(Image.open(b).convert("RGB"), dtype=np.float32)).mean())


def test_static_api_captures_locations_into_rows_and_files(cli, engine, shared_data, tmp_path, test_locations, api_env,
                                                           caplog):
    caplog.set_level(logging.DEBUG, logger="urllib3")
    pano_of = {loc: test_locations[loc] for loc in LOCS}
    panos, csv_text, expected = static_api_setup(pano_of, shared_data / "images")
    (tmp_path / "panos.csv").write_text(csv_text)
    out = tmp_path / "out"
    with StreetViewStub(panos, KEY) as stub:
        api_env(stub.url)
        res = cli("ingest", "capture", "--backend", "static-api", "--locations", ",".join(map(str, LOCS)),
                  "--panos", tmp_path / "panos.csv", "--out", out, "--rate", "1000", "--workers", "2")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("static-api: 3 of 3 selected location(s) queued; captured 3 location(s), "
                                 f"36 images into {out} (")
    assert res.stdout.rstrip().endswith("0 attempt(s) to retry, 0 failed; queue: 3 done")
    # every (panorama, heading) fetched exactly once, with the documented parameters
    assert sorted((r["pano"], r["heading"]) for r in stub.requests) == sorted(
        (p, h) for p in panos for h in ("0", "90", "180", "270"))
    assert all(r["fov"] == "90" and r["pitch"] == "0" and r["size"] == "640x640" for r in stub.requests)

    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM images ORDER BY location_id, time_index, heading")).all()
        jobs = conn.execute(sa.text("SELECT * FROM capture_jobs ORDER BY location_id")).all()
        dumped = " ".join(str(tuple(r)) for r in rows + jobs)
    assert len(rows) == 36
    for r in rows:
        source, label = expected[(r.location_id, r.heading, r.time_index)]
        assert (r.width, r.height, r.split, r.version, r.source) == (224, 224, "test", "v1", "capture:static-api")
        assert r.root == str(out) and r.path.startswith(f"static-api/{r.location_id}/")
        assert r.capture_month.strftime("%B %Y") == label
        assert r.is_query == (r.time_index == 0)
        assert image_file(r).is_file()
        # the real image, through 640x640 and back: close to its source, closer than to any other view
        others = [f for (loc, h, t), (f, _) in expected.items() if loc == r.location_id and f != source]
        assert _mad(image_file(r), source) < 5.0
        assert _mad(image_file(r), source) < min(_mad(image_file(r), f) for f in others)
    assert [(j.status, j.attempts) for j in jobs] == [("done", 1)] * 3
    assert KEY not in dumped and KEY not in res.output
    assert "/maps/api/streetview?pano=" in caplog.text and KEY not in caplog.text  # urllib3's debug log
    # captured trees are re-importable: same names as the original
    assert sorted(p.name for p in (out / "static-api" / "1839").iterdir())[0].startswith("1839_0_0_March 2023_")


def test_retry_backoff_rate_failures_and_no_second_capture(cli, engine, shared_data, tmp_path, test_locations, api_env):
    pano_of = {loc: test_locations[loc] for loc in (1856, 1858)}
    panos, _, _ = static_api_setup(pano_of, shared_data / "images", dates=1)
    out = tmp_path / "out"
    with StreetViewStub(panos, KEY, fail_once={pano_of[1856]}) as stub:
        api_env(stub.url)
        # 1860's panorama is unknown to the server: 404 on every attempt -> failed
        res = cli("ingest", "capture", "--backend", "static-api", "--locations", "1856,1858,1860", "--out", out,
                  "--rate", "5", "--backoff", "0.2", "--max-attempts", "2")
        assert res.exit_code == 1
        errors = [line for line in res.stderr.splitlines() if line.startswith("location ")]
        assert f"location 1856: pano {pano_of[1856]} heading 0: HTTP 500" in errors
        assert errors.count(f"location 1860: pano {test_locations[1860]} heading 0: HTTP 404") == 2
        assert res.stderr.rstrip().endswith(
            "Error: 1 location(s) failed after 2 attempts\n"
            "Hint: see last_error in v_capture_jobs; rerun with --retry-failed")
        assert "captured 2 location(s), 8 images" in res.stdout and "2 attempt(s) to retry, 1 failed" in res.stdout
        # one pace for all requests, 5 per second: with one worker request k reaches the server after
        # its slot and before the next request's slot, so any two requests apart by one other are at
        # least one interval apart, however loaded the machine (unpaced: under 0.1 s)
        times = sorted(r["t"] for r in stub.requests)
        assert len(times) >= 9 and min(b - a for a, b in zip(times, times[2:])) >= 1 / 5 - 1e-9, times
        with engine.connect() as conn:
            jobs = {j.location_id: j for j in conn.execute(sa.text("SELECT * FROM capture_jobs"))}
            assert (jobs[1856].status, jobs[1856].attempts, jobs[1856].last_error) == (
                "done", 2, f"pano {pano_of[1856]} heading 0: HTTP 500")
            assert (jobs[1860].status, jobs[1860].attempts) == ("failed", 2)
            assert conn.execute(sa.text("SELECT count(*) FROM images WHERE location_id = 1860")).scalar() == 0
            view = conn.execute(sa.text("SELECT location_id, status, images FROM v_capture_jobs ORDER BY 1")).all()
        assert [tuple(v) for v in view] == [(1856, "done", 4), (1858, "done", 4), (1860, "failed", 0)]

        # a second run captures nothing again: done jobs are never redone, failed ones wait for --retry-failed
        before = len(stub.requests)
        res = cli("ingest", "capture", "--backend", "static-api", "--locations", "1856,1858,1860", "--out", out)
        assert res.exit_code == 0 and len(stub.requests) == before
        assert "0 of 3 selected location(s) queued; captured 0 location(s), 0 images" in res.stdout
        res = cli("ingest", "capture", "--backend", "static-api", "--retry-failed", "--out", out,
                  "--max-attempts", "1", "--rate", "1000")
        assert res.exit_code == 1 and len(stub.requests) == before + 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM images")).scalar() == 8


def test_api_key_is_required_and_never_leaks(cli, engine, tmp_path, test_locations, monkeypatch):
    monkeypatch.delenv("GEOLOC_GOOGLE_API_KEY", raising=False)
    res = cli("ingest", "capture", "--backend", "static-api", "--locations", "1839", "--out", tmp_path)
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-2:] == [
        "Error: GEOLOC_GOOGLE_API_KEY is not set",
        "Hint: export GEOLOC_GOOGLE_API_KEY=... (a Google Maps Platform key with the Street View Static API)"]
    # nothing listens on port 9: the connection error names the URL, with the key replaced
    monkeypatch.setenv("GEOLOC_GOOGLE_API_KEY", KEY)
    monkeypatch.setenv("GEOLOC_STREETVIEW_BASE_URL", "http://127.0.0.1:9")
    summary = ingest_capture("static-api", location_ids=[1839], out=tmp_path, max_attempts=1, rate=None)
    assert summary.failed == 1
    with engine.connect() as conn:
        error = conn.execute(sa.text("SELECT last_error FROM capture_jobs")).scalar()
    assert error.startswith(f"pano {test_locations[1839]} heading 0: ConnectionError: ")
    assert KEY not in error and "key=***" in error


def test_bad_capture_arguments(cli, db_url, tmp_path, test_locations):
    with pytest.raises(InputError, match=r"unknown capture backend 'drone' \(choose one of: static-api, browser\)"):
        open_backend("drone")
    res = cli("ingest", "capture", "--backend", "static-api", "--locations", "1839,99999")
    assert res.exit_code == 1
    assert res.stderr == ("Error: unknown location(s) 99999\n"
                          "Hint: import them first with 'geoloc ingest locations'\n")
    res = cli("ingest", "capture", "--backend", "static-api", "--locations", "x1")
    assert res.stderr == "Error: --locations: 'x1' is not a comma-separated list of location ids\n"
    res = cli("ingest", "capture", "--backend", "static-api", "--split", "test", "--rate", "0")
    assert res.stderr == "Error: --rate: 0 must be a positive number of requests per second\n"
    bad = tmp_path / "panos.csv"
    bad.write_text("1839,abc,2020-13\n")
    res = cli("ingest", "capture", "--backend", "static-api", "--panos", bad)
    assert res.stderr == f"Error: {bad}, line 1: month '2020-13' is not YYYY-MM\n"
    with pytest.raises(ConfigError):
        from geoloc.imagery.backends.browser import BrowserSettings
        from geoloc.imagery.backends import LocationInfo
        BrowserSettings(base_url=None, url_template="{base}/viewer").url_for(LocationInfo(1, 59.3, 18.0, "p", None, None))


def test_provider_images_get_the_limits_of_user_files(cli, engine, shared_data, tmp_path, test_locations, api_env):
    """A decompression bomb or garbage from the imagery provider fails that location with imagefile's
    message (nothing stored for it); the good location is captured."""
    from bad_images import png_bomb

    bomb = png_bomb(tmp_path / "bomb.png", 8_000, 8_000).read_bytes()
    good = {1858: test_locations[1858]}
    panos, _, _ = static_api_setup(good, shared_data / "images", dates=1)
    raw = {test_locations[1856]: bomb, test_locations[1860]: b"not an image at all"}
    with StreetViewStub(panos, KEY, raw=raw) as stub:
        api_env(stub.url)
        res = cli("ingest", "capture", "--backend", "static-api", "--locations", "1856,1858,1860",
                  "--out", tmp_path / "out", "--rate", "1000", "--max-attempts", "1")
    assert res.exit_code == 1
    errors = sorted(line for line in res.stderr.splitlines() if line.startswith("location "))
    assert len(errors) == 2, res.stderr
    assert errors[0] == (f"location 1856: pano {test_locations[1856]} heading 0: image is 8000 x 8000 pixels, "
                         "more than the limit of 40,000,000 (a decompression bomb or a huge image)")
    assert errors[1].startswith(f"location 1860: pano {test_locations[1860]} heading 0: not a readable image (")
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT location_id, count(*) FROM images GROUP BY 1")).all())
    assert stored == {1858: 4}
