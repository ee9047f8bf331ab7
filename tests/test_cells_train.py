"""Cell heads trained jointly with the embedder on a tiny real subset, and the hybrid search on them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import sqlalchemy as sa

from geoloc.db import models as db_models
from retrieval_data import TEMPLATE, copy_train_val, drop_database, import_train_val

TINY = ["--input-size", 64, "--dim", 32, "--epochs", 2, "--steps-per-epoch", 4, "--places", 4, "--per-place", 4,
        "--lr", 1e-3, "--warmup-steps", 1, "--seed", 3]


@pytest.fixture(scope="module")
def trained(pg_cluster, shared_data, tmp_path_factory):
    """A database with 12 training and 8 validation locations, partition 'p', model 'm' with cells, embedded."""
    from click.testing import CliRunner

    from geoloc.cli import main
    from geoloc.retrieval.embed import embed_images

    name = f"c_{os.getpid()}"
    pg_cluster.create_database(name, template=TEMPLATE)
    url = pg_cluster.url(name)
    root = copy_train_val(shared_data, tmp_path_factory.mktemp("cells_images"), 12, 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOLOC_DATABASE_URL", url)
        mp.setenv("GEOLOC_DATA_DIR", str(root / "data"))
        assert import_train_val(shared_data, root).failed == 0
        runner = CliRunner()
        res = runner.invoke(main, ["cells", "build", "p", "--img-min", "20", "--img-max", "200", "--levels", "2",
                                   "--ratio", "2"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        res = runner.invoke(main, ["train", "--name", "m", "--cells", "p", "--cell-weight", "0.5",
                                   *map(str, TINY)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        embed_images("m")
        yield url, res.stdout
    drop_database(pg_cluster, name, url)


@pytest.fixture
def db(trained, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATABASE_URL", trained[0])
    return sa.create_engine(trained[0])


@pytest.mark.slow
def test_train_with_cells_stores_one_head_row_per_cell_and_the_partition(trained, db):
    assert "cell heads: " in trained[1] and "of partition 'p'" in trained[1]
    row = db_models.get_model(None, "m")
    with db.connect() as conn:
        part = conn.execute(sa.text("SELECT id FROM cell_partitions WHERE name = 'p'")).scalar_one()
        cells = conn.execute(sa.text("SELECT id FROM cells WHERE partition_id = :p ORDER BY id"), {"p": part}).scalars().all()
        heads = conn.execute(sa.text("SELECT cell_id, vector_dims(weight) FROM model_cells WHERE model_id = :m"
                                     " ORDER BY cell_id"), {"m": row.id}).all()
    assert row.status == "ready"
    assert row.hyperparams["cells"] == "p" and row.hyperparams["cells_partition_id"] == part
    assert row.hyperparams["cell_weight"] == 0.5 and row.hyperparams["ms_weight"] == 1.0
    assert [h[0] for h in heads] == cells and {h[1] for h in heads} == {32}
    assert len(cells) == sum(row.data_counts["cells_per_level"]) and len(row.data_counts["cells_per_level"]) == 2
    assert len(row.history) == 2 and all(h["loss"] > 0 for h in row.history)


def _query_image(db) -> str:
    with db.connect() as conn:
        return conn.execute(sa.text("SELECT root || '/' || path FROM images WHERE split = 'val' ORDER BY id LIMIT 1")
                            ).scalar_one()


def _expected_probabilities(db, model_id: int, query: np.ndarray) -> dict[int, float]:
    """Hierarchical cell probabilities recomputed in numpy from the stored heads (softmax per level,
    product along the parent chain, renormalised over the finest level)."""
    with db.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT c.id, c.level, c.parent_id, h.weight::text, h.bias FROM model_cells h JOIN cells c ON c.id = h.cell_id"
            " WHERE h.model_id = :m"), {"m": model_id}).all()
    prob, parent = {}, {}
    for level in sorted({r.level for r in rows}):
        lv = [r for r in rows if r.level == level]
        logits = np.array([np.dot(json.loads(r.weight), query) + r.bias for r in lv])
        p = np.exp(logits - logits.max())
        p /= p.sum()
        prob.update({r.id: float(x) for r, x in zip(lv, p)})
        parent.update({r.id: r.parent_id for r in lv})
    finest = max(r.level for r in rows)
    score = {}
    for r in rows:
        if r.level == finest:
            s, c = 1.0, r.id
            while c is not None:
                s, c = s * prob[c], parent[c]
            score[r.id] = s
    total = sum(score.values())
    return {c: s / total for c, s in score.items()}


@pytest.mark.slow
def test_hybrid_search_json_has_cell_probabilities_and_neighbours_inside_top_cells(trained, db, cli):
    image = _query_image(db)
    res = cli("search", image, "--model", "m", "-k", 5, "--top-cells", 2, "--json")
    assert res.exit_code == 0, res.output
    (out,) = json.loads(res.stdout)
    cells = out["cells"]
    assert len(cells) >= 2 and [c["rank"] for c in cells] == list(range(1, len(cells) + 1))
    probs = [c["probability"] for c in cells]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1 and sum(probs) <= 1 + 1e-9
    # the SQL's probabilities equal the heads applied in numpy to the query's embedding
    from geoloc.retrieval.embed import load_embedder

    with db.connect() as conn:
        emb = load_embedder(conn, "m")
    query = emb.embed([image])[0]
    expected = _expected_probabilities(db, db_models.get_model(None, "m").id, query)
    best = sorted(expected, key=lambda c: -expected[c])[:len(cells)]
    assert [c["cell_id"] for c in cells] == best
    assert probs == pytest.approx([expected[c] for c in best], rel=1e-3, abs=1e-6)
    # every neighbour lies inside one of the two top cells' polygons
    assert out["neighbours"] and out["hybrid"]["source"] == "consensus of cell neighbours"
    with db.connect() as conn:
        inside = conn.execute(sa.text(
            "SELECT count(*) FROM images i JOIN locations l ON l.id = i.location_id WHERE i.id = ANY(:ids)"
            " AND EXISTS (SELECT 1 FROM cells c WHERE c.id = ANY(:cells) AND ST_Contains(c.geom, l.geom))"),
            {"ids": [n["image_id"] for n in out["neighbours"]], "cells": best[:2]}).scalar_one()
    assert inside == len(out["neighbours"])
    text = cli("search", image, "--model", "m").stdout
    assert "geo-cells (hierarchical probability; neighbours from anywhere (--top-cells N to restrict)):" in text
    assert "hybrid prediction:" in text and "(consensus of neighbours (no cell restriction))" in text
    text = cli("search", image, "--model", "m", "--top-cells", 3, "--cell-level", 0).stdout
    assert "neighbours from the top 3 cells)" in text and "level 0)" in text
    plain = json.loads(cli("search", image, "--model", "m", "--no-cells", "--json").stdout)[0]
    assert "cells" not in plain and plain["neighbours"]


@pytest.mark.slow
def test_hybrid_query_is_one_statement_using_the_hnsw_index(trained, db):
    from geoloc.retrieval.hybrid import knn_cells_params, knn_cells_statement
    from geoloc.db import sqlfiles
    from geoloc.db.engine import begin
    from geoloc.retrieval.search import EXPLAIN_PLAN, search_type, set_search_options
    from geoloc.retrieval.vectors import bind_vectors

    text = sqlfiles.read("search/knn_cells.sql")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    assert code.rstrip().endswith(";") and code.count(";") == 1  # one statement
    model_id = db_models.get_model(None, "m").id
    with begin() as conn:
        set_search_options(conn)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_sort = off")  # few rows: reading and sorting them is cheaper
        bind_vectors(conn)
        plan = "\n".join(conn.execute(knn_cells_statement(search_type(conn, model_id, 32), EXPLAIN_PLAN),
                                      knn_cells_params(model_id, np.ones(32, np.float32) / np.sqrt(32), 5,
                                                       top_cells=2, show_cells=5)).scalars())
    assert f"Index Scan using embeddings_hnsw_{model_id} on embeddings" in plan, plan


@pytest.mark.slow
def test_evaluate_cells_stores_cells_and_hybrid_runs(trained, db, cli):
    res = cli("evaluate", "--model", "m", "--split", "val", "--cells", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [m["method"] for m in out["methods"]] == ["cells", "retrieval", "hybrid", "baseline"]
    assert len({m["queries"] for m in out["methods"]}) == 1 and out["queries"] > 0
    by = {m["method"]: m for m in out["methods"]}
    assert by["cells"]["recall"] is None and set(by["hybrid"]["recall"]) == {"1", "5"}
    with db.connect() as conn:
        for method in ("cells", "hybrid"):
            errors = conn.execute(sa.text(
                "SELECT p.top1_error_m, ST_Distance(ST_Transform(p.query_geom, 3006), ST_Transform(p.top1_geom, 3006))"
                " FROM eval_predictions p JOIN eval_runs r ON r.id = p.run_id WHERE r.id = :r AND r.method = :m"),
                {"r": by[method]["run_id"], "m": method}).all()
            assert len(errors) == out["queries"]
            assert all(abs(a - b) < 0.05 for a, b in errors)
            share = sum(1 for _, b in errors if b <= 250) / len(errors)
            assert by[method]["within_m"]["250"] == pytest.approx(share)
    text = cli("evaluate", "--model", "m", "--split", "val", "--cells").stdout
    assert "within 2.5 km" in text and "median error (m)" in text and "Recall@1" in text


@pytest.mark.slow
def test_evaluate_cells_rerank_adds_the_re_ranked_retrieval_and_hybrid(trained, db, cli):
    def run(*extra):
        res = cli("evaluate", "--model", "m", "--split", "val", "--cells", "--rerank", "--json", *extra)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    def predictions(run_id):
        with db.connect() as conn:
            return conn.execute(sa.text(
                "SELECT query_image_id, top1_location_id, top1_error_m, consensus_location_id, first_correct_rank"
                " FROM eval_predictions WHERE run_id = :r ORDER BY query_image_id"), {"r": run_id}).all()

    out = run()
    assert [m["method"] for m in out["methods"]] == ["cells", "retrieval", "hybrid", "retrieval+rerank",
                                                     "hybrid+rerank", "baseline"]
    assert out["rerank"]["weight"] == 0.01 and out["rerank"]["top"] == 10
    by = {m["method"]: m for m in out["methods"]}
    assert len({m["queries"] for m in out["methods"]}) == 1
    with db.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT id, method FROM eval_runs WHERE id = ANY(:ids)"),
                                   {"ids": [m["run_id"] for m in out["methods"]]}).all())
        metrics = conn.execute(sa.text("SELECT metrics FROM eval_runs WHERE id = :r"),
                               {"r": by["hybrid+rerank"]["run_id"]}).scalar_one()
    assert sorted(stored.values()) == ["baseline", "cells", "hybrid", "hybrid+rerank", "model", "model+rerank"]
    assert metrics["rerank"]["weight"] == 0.01 and len(predictions(by["hybrid+rerank"]["run_id"])) == out["queries"]
    # the re-ranked retrieval is `geoloc evaluate --rerank`'s run
    plain = json.loads(cli("evaluate", "--model", "m", "--split", "val", "--rerank", "--json").stdout)
    reranked = next(m for m in plain["methods"] if m["method"] == "model+rerank")
    assert reranked["recall"]["1"] == by["retrieval+rerank"]["recall"]["1"]
    # weight 0 keeps the model's order: the re-ranked hybrid predicts exactly what the hybrid does
    zero = {m["method"]: m for m in run("--rerank-weight", "0")["methods"]}
    hybrid = predictions(zero["hybrid"]["run_id"])
    assert predictions(zero["hybrid+rerank"]["run_id"]) == hybrid and len(hybrid) == out["queries"]
    assert zero["hybrid+rerank"]["recall"] == zero["hybrid"]["recall"] == by["hybrid"]["recall"]
    text = cli("evaluate", "--model", "m", "--split", "val", "--cells", "--rerank").stdout
    assert "re-ranking (SIFT + MAGSAC inliers): top=10, weight=0.01" in text and "hybrid+rerank" in text


@pytest.mark.slow
def test_an_interrupted_cells_run_resumes_like_the_uninterrupted_one(trained, db, monkeypatch, tmp_path):
    from geoloc.model.train import Interrupted, TrainConfig, train

    monkeypatch.setenv("GEOLOC_DATA_DIR", str(tmp_path))
    cfg = TrainConfig(input_size=64, dim=32, epochs=2, steps_per_epoch=4, places=4, per_place=4, lr=1e-3,
                      warmup_steps=1, seed=3, cells="p", cell_weight=0.5)

    def ctrl_c(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        train("r", cfg, on_step=ctrl_c, progress=False)
    row = train("r", resume=True, progress=False)
    full = db_models.get_model(None, "m")
    assert row.status == "ready" and row.metrics["steps"] == full.metrics["steps"] == 8
    assert row.metrics["cell_heads"] == full.metrics["cell_heads"] == sum(full.data_counts["cells_per_level"])
    assert [h["loss"] for h in row.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-3)


@pytest.mark.slow
def test_cells_errors_are_one_line_and_store_nothing(trained, db, cli, tmp_path, monkeypatch):
    from geoloc.model.train import save_untrained
    from geoloc.retrieval.embed import embed_images

    monkeypatch.setenv("GEOLOC_DATA_DIR", str(tmp_path))
    res = cli("train", "--name", "x", "--cells", "nope", "--input-size", 64)
    assert res.exit_code == 1
    assert res.stderr == "Error: cell partition 'nope' not found\nHint: build it with 'geoloc cells build NAME'\n"
    save_untrained("plain", "mobilenetv3small", 32, 64, seed=0)
    embed_images("plain", split="val")
    image = _query_image(db)
    res = cli("search", image, "--model", "plain", "--cells")
    assert res.exit_code == 1
    assert res.stderr == ("Error: model 'plain' has no cell heads\n"
                          "Hint: train one with 'geoloc train --cells PARTITION', or search without --cells\n")
    assert cli("search", image, "--model", "plain").exit_code == 0  # no heads: the plain search
    res = cli("search", image, "--model", "m", "--top-cells", -1)
    assert res.exit_code == 1 and res.stderr == "Error: --top-cells -1: must be between 0 (no restriction) and 1000\n"
    res = cli("evaluate", "--model", "plain", "--split", "val", "--cells")
    assert res.exit_code == 1 and res.stderr.startswith("Error: model 'plain' has no cell heads\n")
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM models WHERE name = 'x'")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM eval_runs r JOIN models m ON m.id = r.model_id"
                                    " WHERE m.name = 'plain'")).scalar_one() == 0


@pytest.mark.slow
def test_rebuilding_a_used_partition_keeps_the_old_one_for_its_models(trained, db, cli):
    # last in this module: it renames the module's partition
    with db.connect() as conn:
        old = conn.execute(sa.text("SELECT id FROM cell_partitions WHERE name = 'p'")).scalar_one()
        users = conn.execute(sa.text("SELECT count(*) FROM models WHERE hyperparams->>'cells' = 'p'")).scalar_one()
    res = cli("cells", "build", "p", "--img-min", 20, "--img-max", 150, "--levels", 1, "--replace")
    assert res.exit_code == 0, res.output
    assert f"the previous 'p' was kept as 'p~{old}' (used by {users} model(s))" in res.stdout
    with db.connect() as conn:
        names = dict(conn.execute(sa.text("SELECT name, levels FROM cell_partitions")).all())
    assert names == {f"p~{old}": 2, "p": 1}
    (out,) = json.loads(cli("search", _query_image(db), "--model", "m", "--json").stdout)
    with db.connect() as conn:
        parts = set(conn.execute(sa.text("SELECT partition_id FROM cells WHERE id = ANY(:ids)"),
                                 {"ids": [c["cell_id"] for c in out["cells"]]}).scalars())
    assert parts == {old} and out["neighbours"]


@pytest.mark.slow
def test_the_demo_evaluates_cells_once_and_its_table_matches_the_evaluation(trained, db):
    """geoloc.demo's geo-cells stage runs `evaluate --cells` (once) and its report table, computed in SQL
    from the stored predictions, has the figures geoloc.retrieval.hybrid_eval computes in Python."""
    from geoloc.demo import _evaluate_cells, cells_table

    with db.begin() as conn:  # the runs of the module's other tests
        conn.execute(sa.text("DELETE FROM eval_runs"))
    assert cells_table("m", "val", None) is None
    line = _evaluate_cells("m", "val", None)
    assert line.startswith("cells: median error ") and "; hybrid: median error " in line
    table = cells_table("m", "val", None)
    assert _evaluate_cells("m", "val", None) == f"cells evaluation of 'm' already stored (run {table['runs'][0]})"
    with db.connect() as conn:
        runs = conn.execute(sa.text("SELECT method, id FROM eval_runs ORDER BY id DESC LIMIT 4")).all()
    assert dict(runs) == dict(zip(["cells", "model", "hybrid", "baseline"], table["runs"]))
    assert table["header"] == ["cells-only (m)", "retrieval-only (m)", "hybrid, top 3 cells of level 0 (m)",
                               "16x16 thumbnails"]
    from geoloc.retrieval.hybrid_eval import evaluate_cells

    out = evaluate_cells("m", split="val", store=False).to_json()
    body = dict(table["body"])
    for i, m in enumerate(out["methods"]):
        for radius, label in (("25", "within 25 m"), ("250", "within 250 m"), ("2500", "within 2.5 km")):
            assert body[label][i] == f"{100 * m['within_m'][radius]:.1f} %", (m["method"], label)
        assert body["median error"][i] == f"{m['error_m']['median']:,.0f} m"
        recall = m["recall"]
        assert body["Recall@1 / @5"][i] == ("-" if recall is None else f"{recall['1']:.3f} / {recall['5']:.3f}")
        assert body["queries"][i] == f"{out['queries']:,}"
