"""`geoloc ingest capture --backend browser`: real headless Chromium on the loopback test viewer."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from geoloc.collect.locations import ingest_locations
from geoloc.imagefile import image_file
from geoloc.imagery.backends.browser import BrowserSettings
from geoloc.imagery.capture import ingest_capture

from imagery_server import ViewerStub, viewer_setup

LOCS = [1839, 1845]

pytestmark = pytest.mark.slow  # starts Chromium


@pytest.fixture
def pano_of(db_url, shared_data, engine):
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, pano_id FROM locations WHERE id = ANY(:ids)"),
                                 {"ids": LOCS}).all())


def _mad(a, b) -> float:
    return float(np.abs(np.asarray(Image.open(a).convert("RGB"), dtype=np.float32)
                        - np.asarray(Image.open(b).convert("RGB"), dtype=np.float32)).mean())


def test_browser_captures_locations_from_the_viewer(cli, engine, shared_data, tmp_path, pano_of, monkeypatch):
    # 1845's page lists its dates oldest first: time index 0 must still be the newest
    pages, expected = viewer_setup(pano_of, shared_data / "images", dates=2, reverse={1845})
    raw = sorted((shared_data / "raw_examples").glob("*.png"))[0]
    out = tmp_path / "out"
    with ViewerStub(pages, raw) as viewer:
        monkeypatch.setenv("GEOLOC_VIEWER_BASE_URL", viewer.url)
        res = cli("ingest", "capture", "--backend", "browser", "--locations", ",".join(map(str, LOCS)),
                  "--out", out, "--settle", "0", "--rate", "1000", "--workers", "2")
    assert res.exit_code == 0, res.output
    assert "captured 2 location(s), 16 images" in res.stdout
    pages_opened = [r for r in viewer.requests if r["path"] == "/viewer"]
    assert sorted(r["pano"] for r in pages_opened) == sorted(pano_of.values())
    assert all(abs(float(r["lat"]) - 59.3) < 0.1 and abs(float(r["lng"]) - 18.07) < 0.1 for r in pages_opened)

    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM images ORDER BY location_id, time_index, heading")).all()
    assert len(rows) == 2 * 2 * 4
    figures = []
    for r in rows:
        source, label = expected[(r.location_id, r.heading, r.time_index)]
        assert (r.width, r.height, r.source, r.split) == (224, 224, "capture:browser", "test")
        assert r.capture_month.strftime("%B %Y") == label
        assert r.is_query == (r.time_index == 0)
        mad = _mad(image_file(r), source)
        others = [f for (loc, _, _), (f, _) in expected.items() if loc == r.location_id and f != source]
        assert mad < min(_mad(image_file(r), f) for f in others)  # the right date and heading
        figures.append(mad)
    print(f"\nbrowser captures vs their source images: mean absolute difference {np.mean(figures):.2f} "
          f"(max {max(figures):.2f})")
    assert max(figures) < 8.0


def test_selectors_are_configuration(engine, shared_data, tmp_path, pano_of, monkeypatch):
    pages, _ = viewer_setup({1839: pano_of[1839]}, shared_data / "images", dates=1)
    raw = sorted((shared_data / "raw_examples").glob("*.png"))[0]
    with ViewerStub(pages, raw) as viewer:
        settings = BrowserSettings(base_url=viewer.url, date_selector=".no-such-strip button", timeout_s=1,
                                   settle_s=0)
        summary = ingest_capture("browser", location_ids=[1839], out=tmp_path, settings=settings,
                                 max_attempts=1, rate=None)
        assert summary.failed == 1
        assert summary.errors == [(1839, "no date buttons matching '.no-such-strip button' on the viewer page "
                                         "within 1 s")]
        # the same page captured once the selectors say where things are
        settings = BrowserSettings(base_url=viewer.url, url_template="{base}/viewer?pano={pano}&lat={lat}&lng={lng}",
                                   date_selector="div.time-machine > button", canvas_selector="#pano",
                                   rotate_selector="button.rotate", settle_s=0)
        summary = ingest_capture("browser", out=tmp_path, settings=settings, rate=None, retry_failed=True)
    assert (summary.done, summary.images) == (1, 4)
