"""Every page geoloc writes shows any file name as text: hostile names in a real browser.

A query photo, database images and titles named with `</script>`, `${...}`, quotes and an
`<img onerror>` are put on the `geoloc search --map` page; headless Chromium opens it from file://,
every tooltip and popup is opened the way Leaflet opens them on hover and click, and none of the
names' scripts may have run while each name is visible, exactly, as text.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from geoloc.retrieval.baseline import THUMBNAIL_MODEL
from page_browser import Browser, browser  # noqa: F401  (browser: the fixture)
from retrieval_data import subset, subset_fixture  # noqa: F401

pytestmark = pytest.mark.slow  # starts Chromium

subset_db = subset_fixture(n_locations=4, models=(THUMBNAIL_MODEL,))

# a path whose text is `...a</script><script>window.pwned=1</script>${window.pwned2=1}'"<img ...>.jpg`
QUERY_PARTS = ("a<", "script><script>window.pwned=1<",
               "script>${window.pwned2=1}'\"`<img src=x onerror=window.pwned3=1>.jpg")
NEIGHBOUR_DIR = "n</script><script>window.pwned4=1</script>${window.pwned5=1}`<img src=x onerror=window.pwned6=1>"
FLAGS = [f"pwned{i}" if i > 1 else "pwned" for i in range(1, 7)]

# Leaflet's own behaviour on hover/click: open each tooltip and popup (content set as HTML), read its text
READ_LAYERS = """
const map = Object.values(window).find(v => v instanceof L.Map);
const texts = {tooltips: [], popups: [], markers: 0};
map.eachLayer(layer => {
  if (layer instanceof L.CircleMarker) texts.markers += 1;
  if (layer.getTooltip && layer.getTooltip()) {
    layer.openTooltip(layer.getLatLng ? layer.getLatLng() : undefined);
    texts.tooltips.push(layer.getTooltip().getElement().textContent.trim());
    layer.closeTooltip();
  }
  if (layer.getPopup && layer.getPopup()) {
    layer.openPopup();
    texts.popups.push(layer.getPopup().getElement().textContent.trim());
    layer.closePopup();
  }
});
return texts;
"""


def flags_set(browser: Browser) -> dict:
    return browser.js("return Object.fromEntries(arguments[0].map(k => [k, window[k]]))", FLAGS)


def script_errors(browser: Browser) -> list[str]:
    return [e["message"] for e in browser.driver.get_log("browser") if e.get("source") == "javascript"]


@pytest.fixture
def hostile_files(subset, tmp_path):
    """The query photo under a hostile path, and the images of one database location moved under a
    hostile folder (rows updated to point there)."""
    from geoloc.db.engine import get_engine

    engine = get_engine(subset.url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, root, path FROM images WHERE location_id = :l"),
                            {"l": subset.location_ids[0]}).all()
    query = tmp_path.joinpath(*QUERY_PARTS)
    query.parent.mkdir(parents=True)
    shutil.copy2(Path(rows[0].root) / rows[0].path, query)
    root = tmp_path / NEIGHBOUR_DIR
    for r in rows:
        (root / r.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(r.root) / r.path, root / r.path)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE images SET root = :root WHERE location_id = :l"),
                     {"root": str(root), "l": subset.location_ids[0]})
    yield query, [root / r.path for r in rows]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE images SET root = :root WHERE location_id = :l"),
                     {"root": rows[0].root, "l": subset.location_ids[0]})


def test_search_map_shows_hostile_names_as_text_and_runs_none(cli, browser, hostile_files, tmp_path):
    query, neighbours = hostile_files
    assert str(query).endswith("a</script><script>window.pwned=1</script>${window.pwned2=1}'\"`"
                               "<img src=x onerror=window.pwned3=1>.jpg")
    page = tmp_path / "map.html"
    res = cli("search", query, "--model", THUMBNAIL_MODEL, "-k", "4", "--map", page)
    assert res.exit_code == 0, res.output

    browser.open(page)
    texts = browser.js(READ_LAYERS)
    time.sleep(0.5)  # let any image error handler fire
    assert flags_set(browser) == {k: None for k in FLAGS}
    assert script_errors(browser) == []
    assert texts["markers"] == 4 + 2  # the neighbours, the best match and the consensus
    legend = browser.js("return document.getElementById('geoloc-legend').textContent")
    assert str(query) in legend
    assert any(t.startswith(f"{query.name}: consensus, location ") for t in texts["tooltips"])
    assert any(t.startswith(f"{query.name}: best match, location ") for t in texts["tooltips"])
    assert any(t.startswith(str(query)) for t in texts["popups"])
    shown = [p for p in texts["popups"] if NEIGHBOUR_DIR in p]
    assert shown and all(any(str(n) in p for n in neighbours) for p in shown)
    assert browser.js("return document.title") == "geoloc search"


def test_map_title_and_layer_names_are_text(browser, hostile_files, tmp_path, subset):
    """Several queries (a layer control listing their names) and a hostile title."""
    from geoloc.retrieval.search import search
    from geoloc.retrieval.webmap import write_map

    query, neighbours = hostile_files
    results = search([query, neighbours[1]], THUMBNAIL_MODEL, k=3)
    title = "model </title><script>window.pwned=1</script>`${window.pwned2=1}`"
    page = write_map(results, tmp_path / "two.html", title=title)
    browser.open(page)
    browser.js(READ_LAYERS)
    layers = browser.js("return [...document.querySelectorAll('.leaflet-control-layers-overlays label')]"
                        ".map(s => s.textContent.trim())")
    time.sleep(0.5)
    assert flags_set(browser) == {k: None for k in FLAGS}
    assert script_errors(browser) == []
    assert browser.js("return document.title") == title
    assert layers == [query.name, neighbours[1].name]
    assert browser.js("return document.querySelector('#geoloc-legend b').textContent") == title


def test_plot_takes_dollar_signs_in_file_names_literally(cli, subset, tmp_path):
    """matplotlib reads `$...$` in a title as mathematics: a file name must stay plain text."""
    from geoloc.db.engine import get_engine

    with get_engine(subset.url).connect() as conn:
        row = conn.execute(sa.text("SELECT root, path FROM images ORDER BY id LIMIT 1")).one()
    query = tmp_path / "a$b_$c^{x.jpg"
    shutil.copy2(Path(row.root) / row.path, query)
    png = tmp_path / "plot.png"
    res = cli("search", query, "--model", THUMBNAIL_MODEL, "-k", "3", "--plot", png)
    assert res.exit_code == 0, res.output
    assert f"plot written to {png}" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
