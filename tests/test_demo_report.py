"""The demo report (`geoloc.demo.write_report`) on a small real subset: an untrained model and the
thumbnail baseline evaluated on Test v1, a hostile model name, area name and stage text, and a
database URL with a password. The Markdown parses without any raw HTML, the HTML shows every value
as text in real Chromium, links the map and the picture, and no password appears anywhere."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from geoloc.retrieval.baseline import THUMBNAIL_MODEL
from page_browser import browser  # noqa: F401  (fixture)
from retrieval_data import subset_fixture

pytestmark = pytest.mark.slow  # embeds with a CNN and starts Chromium

HOSTILE_MODEL = ("m</script><script>window.pwned=1</script>${window.pwned2=1}**bold** | `x` "
                 "<img src=x onerror=window.pwned3=1>")
HOSTILE_AREA = "area'\"><svg onload=window.pwned4=1>${window.pwned5=1}</title>"
HOSTILE_DETAIL = "trained <b>fast</b> | [link](javascript:window.pwned6=1) & more"
FLAGS = ["pwned", "pwned2", "pwned3", "pwned4", "pwned5", "pwned6"]

subset_db = subset_fixture(n_locations=6, models=(THUMBNAIL_MODEL,))


def with_password(url: str) -> tuple[str, str]:
    """URL with a password in it (the test cluster trusts local connections, so any password works)
    and that password."""
    parts = urlsplit(url)
    creds, host = parts.netloc.rsplit("@", 1)
    if ":" in creds:
        return url, creds.split(":", 1)[1]
    secret = "s3cret-Pa55"
    return urlunsplit(parts._replace(netloc=f"{creds}:{secret}@{host}")), secret


@pytest.fixture(scope="module")
def written(subset_db, tmp_path_factory):
    from geoloc.db.engine import get_engine
    from geoloc.demo import StageTime, write_report
    from geoloc.model.train import save_untrained
    from geoloc.retrieval.embed import embed_images
    from geoloc.retrieval.evaluate import evaluate

    url, secret = with_password(subset_db.url)
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOLOC_DATABASE_URL", url)
        # registered under a valid name, then renamed in the database: the pages must be safe for any
        # name stored there (registered before a naming rule, or written by another tool)
        save_untrained("report-model", "mobilenetv3small", 32, 64, seed=0, out=tmp / "model")
        with get_engine(url).begin() as conn:
            conn.execute(sa.text("UPDATE models SET name = :hostile WHERE name = 'report-model'"),
                         {"hostile": HOSTILE_MODEL})
        embed_images(HOSTILE_MODEL)
        report = evaluate(model=HOSTILE_MODEL, split="test", version="v1")
        stages = [StageTime("database", 0.5, "ready"), StageTime("training", 12.25, HOSTILE_DETAIL)]
        md, html = write_report(tmp / "out", HOSTILE_MODEL, report, stages, area=HOSTILE_AREA)
    return md, html, report, secret, url


def test_markdown_has_the_content_and_no_raw_html(written):
    from markdown_it import MarkdownIt

    md, _, report, secret, url = written
    text = md.read_text()
    assert secret not in text
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    kinds = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
    assert not kinds & {"html_inline", "html_block"}  # every < of the values is escaped
    assert tokens[0].type == "heading_open" and tokens[1].content.startswith("geoloc demo report: model ")
    heading = "".join(c.content for c in tokens[1].children)
    assert heading == f"geoloc demo report: model {HOSTILE_MODEL}"
    inline = [c for t in tokens if t.children for c in t.children]
    assert any(c.type == "code_inline" and c.content == HOSTILE_AREA for c in inline)
    assert any(c.type == "strong_open" for c in inline)  # **test v1**
    cell_text = ["".join(c.content for c in t.children) for prev, t in zip(tokens, tokens[1:])
                 if prev.type in ("th_open", "td_open")]
    assert f"model {HOSTILE_MODEL}" in cell_text and HOSTILE_DETAIL in cell_text
    assert f"{report.methods[0].recall[1]:.3f}" in cell_text
    assert [c.attrGet("href") for c in inline if c.type == "link_open"] == ["map.html"]
    assert [c.attrGet("src") for c in inline if c.type == "image"] == ["neighbours.png"]
    user = urlsplit(url).netloc.rsplit("@", 1)[0].split(":", 1)[0]
    assert any(c.type == "code_inline" and c.content.startswith(f"psql postgresql://{user}@") for c in inline)


def test_html_report_shows_every_value_as_text(written, browser):
    md, html, report, secret, _ = written
    out = html.parent
    for page in (html, out / "map.html", md):
        assert secret not in page.read_text()
    browser.open(html)
    time.sleep(0.5)
    flags = browser.js("return Object.fromEntries(arguments[0].map(k => [k, window[k]]))", FLAGS)
    assert flags == {k: None for k in FLAGS}
    assert browser.js("return document.title") == f"geoloc demo report: model {HOSTILE_MODEL}"
    assert browser.js("return document.querySelector('h1').textContent") == \
        f"geoloc demo report: model {HOSTILE_MODEL}"
    assert browser.js("return document.querySelector('strong').textContent") == "test v1"
    body = browser.js("return document.body.innerText")
    assert "**" not in body.replace(HOSTILE_MODEL, "") and HOSTILE_AREA in body and HOSTILE_DETAIL in body
    header = browser.js("return [...document.querySelectorAll('#recall tr:first-child th')].map(c => c.textContent)")
    assert header == ["", *[f"{m.method} {m.model}" for m in report.methods]]
    first = browser.js("return [...document.querySelectorAll('#recall tr')[1].children].map(c => c.textContent)")
    assert first == ["Recall@1", *[f"{m.recall[1]:.3f}" for m in report.methods]]
    assert browser.js("return document.querySelector('iframe').getAttribute('src')") == "map.html"
    assert browser.js("return document.querySelector('a').getAttribute('href')") == "map.html"
    assert browser.js("return document.querySelector('img').naturalWidth") > 100  # neighbours.png loaded

    browser.open(out / "map.html")
    time.sleep(0.5)
    flags = browser.js("return Object.fromEntries(arguments[0].map(k => [k, window[k]]))", FLAGS)
    assert flags == {k: None for k in FLAGS}
    assert [e["message"] for e in browser.driver.get_log("browser") if e.get("source") == "javascript"] == []
    assert browser.js("return document.querySelector('#geoloc-legend b').textContent") == \
        f"geoloc demo: model {HOSTILE_MODEL}, test v1 queries"
    assert browser.js("return document.querySelectorAll('#geoloc-legend li').length") >= 1


def test_demo_examples_show_the_true_nearest_neighbours_of_each_query(subset_db, tmp_path, monkeypatch):
    """`geoloc.demo._examples`: each Test v1 query's k nearest other images, found by brute force here
    from the stored vectors, are the ones on the map (rank, location and distance)."""
    import json

    import numpy as np

    from geoloc.demo import _examples

    monkeypatch.setenv("GEOLOC_DATABASE_URL", subset_db.url)
    with sa.create_engine(subset_db.url).connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT i.id, i.location_id, i.is_query, i.heading, e.embedding::text AS v FROM images i "
            "JOIN embeddings e ON e.image_id = i.id JOIN models m ON m.id = e.model_id "
            "WHERE m.name = :m AND i.split = 'test' AND i.version = 'v1' ORDER BY i.id"), {"m": THUMBNAIL_MODEL}).all()
    vectors = np.array([json.loads(r.v) for r in rows])
    queries = sorted((r for r in rows if r.is_query and r.heading == 0), key=lambda r: (r.location_id, r.id))[:2]
    assert len(queries) == 2
    picture, page = _examples(tmp_path, THUMBNAIL_MODEL, n=2, k=3)
    assert picture.stat().st_size > 10_000
    html = page.read_text()
    ids = [r.id for r in rows]
    for q in queries:
        qv = vectors[ids.index(q.id)]
        dist = 1 - vectors @ qv / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(qv))
        order = [i for i in np.argsort(dist, kind="stable") if ids[i] != q.id][:3]
        for rank, i in enumerate(order, start=1):
            assert f"#{rank} loc {rows[i].location_id} d={dist[i]:.3f}" in html, (q.id, rank)


# Four query images; per method the top-1 error (m) and the rank of the first correct neighbour of each,
# stored as `geoloc evaluate --cells` stores them: retrieval-only and baseline first, then cells and hybrid.
CELL_RUNS = [
    ("model", "model", [0, 10, 120, 3000], [1, 1, 3, None], {}),
    ("baseline", "thumbnail", [5, 240, 240, 2400], [1, None, None, None], {}),
    ("cells", "model", [30, 600, 2000, 4000], [None] * 4, {"top_cells": 3, "cell_level": 0}),
    ("hybrid", "model", [20, 20, 900, 2600], [1, 2, None, 6], {"top_cells": 3, "cell_level": 0}),
]
CELLS_HEADER = ["", f"cells-only ({HOSTILE_MODEL})", f"retrieval-only ({HOSTILE_MODEL})",
                f"hybrid, top 3 cells of level 0 ({HOSTILE_MODEL})", "16x16 thumbnails"]
CELLS_BODY = [
    ["within 25 m", "0.0 %", "50.0 %", "50.0 %", "25.0 %"],
    ["within 100 m", "25.0 %", "50.0 %", "50.0 %", "25.0 %"],
    ["within 250 m", "25.0 %", "75.0 %", "50.0 %", "75.0 %"],
    ["within 1 km", "50.0 %", "75.0 %", "75.0 %", "75.0 %"],
    ["within 2.5 km", "75.0 %", "75.0 %", "75.0 %", "100.0 %"],
    ["median error", "1,300 m", "65 m", "460 m", "240 m"],
    ["Recall@1 / @5", "-", "0.500 / 0.750", "0.250 / 0.500", "0.250 / 0.250"],
    ["queries", "4", "4", "4", "4"],
]


def _store_cell_runs(url: str) -> list[int]:
    """The runs of CELL_RUNS for the report's model and the thumbnail baseline (SQL inserts); their ids."""
    import json

    ids = []
    with sa.create_engine(url).begin() as conn:
        models = {"model": conn.execute(sa.text("SELECT id FROM models WHERE name = :n"),
                                        {"n": HOSTILE_MODEL}).scalar_one(),
                  "thumbnail": conn.execute(sa.text("SELECT id FROM models WHERE name = :n"),
                                            {"n": THUMBNAIL_MODEL}).scalar_one()}
        queries = conn.execute(sa.text(
            "SELECT i.id, l.geom FROM images i JOIN locations l ON l.id = i.location_id"
            " WHERE i.split = 'test' AND i.version = 'v1' AND i.is_query ORDER BY i.id LIMIT 4")).all()
        assert len(queries) == 4
        for method, model, errors, ranks, extra in CELL_RUNS:
            run = conn.execute(sa.text(
                "INSERT INTO eval_runs (model_id, method, split, version, metrics)"
                " VALUES (:m, :method, 'test', 'v1', CAST(:metrics AS jsonb)) RETURNING id"),
                {"m": models[model], "method": method, "metrics": json.dumps(extra)}).scalar_one()
            for (image_id, geom), error, rank in zip(queries, errors, ranks):
                conn.execute(sa.text(
                    "INSERT INTO eval_predictions (run_id, query_image_id, query_geom, top1_error_m,"
                    " first_correct_rank) VALUES (:r, :i, :g, :e, :rank)"),
                    {"r": run, "i": image_id, "g": geom, "e": error, "rank": rank})
            ids.append(run)
    return ids


def test_the_geo_cells_table_comes_from_the_stored_cells_evaluation(written, subset_db, tmp_path, browser):
    from markdown_it import MarkdownIt

    from geoloc.demo import StageTime, write_report

    md, html, report, _, url = written
    assert "Geo-cells" not in md.read_text() and "Geo-cells" not in html.read_text()  # no cells run yet
    ids = _store_cell_runs(subset_db.url)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GEOLOC_DATABASE_URL", url)
            md2, html2 = write_report(tmp_path / "cells", HOSTILE_MODEL, report, [StageTime("database", 0.5, "ok")])
    finally:
        with sa.create_engine(subset_db.url).begin() as conn:
            conn.execute(sa.text("DELETE FROM eval_runs WHERE id = ANY(:ids)"), {"ids": ids})
    browser.open(html2)
    rows = browser.js("return [...document.querySelectorAll('#cells tr')]"
                      ".map(r => [...r.children].map(c => c.textContent))")
    assert rows[0] == CELLS_HEADER
    assert rows[1:-1] == CELLS_BODY
    assert rows[-1] == ["eval run", *map(str, [ids[2], ids[0], ids[3], ids[1]])]
    assert browser.js("return Object.fromEntries(arguments[0].map(k => [k, window[k]]))", FLAGS) == \
        {k: None for k in FLAGS}

    tokens = MarkdownIt("commonmark").enable("table").parse(md2.read_text())
    assert not {c.type for t in tokens for c in (t.children or [])} & {"html_inline", "html_block"}
    cells = ["".join(c.content for c in t.children) for prev, t in zip(tokens, tokens[1:])
             if prev.type in ("th_open", "td_open")]
    start = cells.index(CELLS_HEADER[1]) - 1
    width = len(CELLS_HEADER)
    table = [cells[start + i:start + i + width] for i in range(0, width * (len(CELLS_BODY) + 1), width)]
    assert table == [CELLS_HEADER, *CELLS_BODY]
