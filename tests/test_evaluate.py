"""`geoloc evaluate`: the SQL protocol equals a direct numpy computation on the same embeddings; runs and
predictions are stored and drawable; the report shows model and baseline side by side."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import sqlalchemy as sa
from pyproj import Transformer

from geoloc.db.engine import begin, get_engine
from geoloc.retrieval.baseline import THUMBNAIL_MODEL
from geoloc.retrieval.evaluate import evaluate, evaluate_model, evaluate_post
from retrieval_data import TINY_MODEL, subset, subset_fixture  # noqa: F401

subset_db = subset_fixture()
TO_3006 = Transformer.from_crs(4326, 3006, always_xy=True)


def numpy_protocol(engine, model: str, k: int, consensus_k: int, distractors: tuple[str, ...] = ()) -> dict:
    """The original protocol written directly: brute-force cosine distances in float64, errors by pyproj.
    Queries are Test v1's; the database is every other image of Test v1 and of the DISTRACTORS splits."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT i.id, i.split, i.location_id, i.heading, i.time_index, e.embedding::real[] AS v, "
            "ST_X(l.geom) AS lng, ST_Y(l.geom) AS lat "
            "FROM images i JOIN locations l ON l.id = i.location_id "
            "JOIN embeddings e ON e.image_id = i.id JOIN models m ON m.id = e.model_id "
            "WHERE m.name = :m AND i.split = ANY(:s) AND i.version = 'v1' ORDER BY i.id"),
            {"m": model, "s": ["test", *distractors]}).all()
    ids = np.array([r.id for r in rows])
    loc = np.array([r.location_id for r in rows])
    vectors = np.array([r.v for r in rows], dtype=np.float64)
    xy = {r.location_id: np.array(TO_3006.transform(r.lng, r.lat)) for r in rows}
    newest = {}
    for r in (r for r in rows if r.split == "test"):
        key = (r.location_id, r.heading)
        if key not in newest or (r.time_index, r.id) < newest[key][0]:
            newest[key] = ((r.time_index, r.id), r.id)
    is_query = np.isin(ids, [v[1] for v in newest.values()])
    q, d = np.where(is_query)[0], np.where(~is_query)[0]
    dist = 1.0 - vectors[q] @ vectors[d].T / np.outer(np.linalg.norm(vectors[q], axis=1), np.linalg.norm(vectors[d], axis=1))
    first, top1, cons, top1_loc = [], [], [], {}
    for qi, row in zip(q, dist):
        order = np.lexsort((ids[d], row))[:k]
        err = [float(np.linalg.norm(xy[loc[qi]] - xy[loc[d[j]]])) for j in order]
        first.append(next((rank + 1 for rank, e in enumerate(err) if e <= 25.0), None))
        top1.append(err[0])
        top1_loc[int(ids[qi])] = int(loc[d[order[0]]])
        votes = {}
        for rank, j in enumerate(order[:consensus_k]):
            v = votes.setdefault(loc[d[j]], [0.0, -rank])
            v[0] += 1.0 - row[j]
        winner = max(votes, key=lambda l: tuple(votes[l]))
        cons.append(float(np.linalg.norm(xy[loc[qi]] - xy[winner])))
    recall = {n: float(np.mean([f is not None and f <= n for f in first])) for n in (1, 5, 10, 20)}
    stats = lambda e: dict(zip(("median", "p75", "p90"), np.percentile(e, [50, 75, 90]))) | {"mean": float(np.mean(e))}
    return {"queries": len(q), "database": len(d), "recall": recall, "top1": stats(top1), "consensus": stats(cons),
            "top1_location": top1_loc}


@pytest.mark.parametrize("model", [TINY_MODEL, THUMBNAIL_MODEL])
def test_sql_evaluation_equals_numpy_on_the_same_embeddings(subset, model):
    engine = get_engine(subset.url)
    report = evaluate(model, split="test", version="v1", k=20, consensus_k=5)
    got = report.methods[0]
    assert got.model == model
    expected = numpy_protocol(engine, model, 20, 5)
    assert (got.queries, got.database) == (expected["queries"], expected["database"])
    assert got.queries == len({(loc, h) for loc in subset.location_ids for h in range(4)}) - _missing_headings(engine)
    assert got.recall == expected["recall"]
    assert got.top1_error_m == pytest.approx(expected["top1"], abs=1e-3)
    assert got.consensus_error_m == pytest.approx(expected["consensus"], abs=1e-3)
    assert {o.query_image_id: o.top1_location_id for o in got.outcomes} == expected["top1_location"]
    # the protocol's queries are the importer's is_query images
    with engine.connect() as conn:
        flagged = set(conn.execute(sa.text("SELECT id FROM images WHERE is_query")).scalars())
    assert {o.query_image_id for o in got.outcomes} == flagged


def _missing_headings(engine) -> int:
    with engine.connect() as conn:
        present = conn.execute(sa.text("SELECT count(DISTINCT (location_id, heading)) FROM images")).scalar()
        locations = conn.execute(sa.text("SELECT count(DISTINCT location_id) FROM images")).scalar()
    return 4 * locations - present


def test_cli_report_is_side_by_side_and_runs_are_stored_for_qgis(cli, subset):
    engine = get_engine(subset.url)
    with engine.connect() as conn:
        runs_before = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM eval_runs")).scalar()
    res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("split test v1: ") and "exact search, k=20, consensus of 5, correct = within 25 m" in lines[0]
    assert lines[1].split() == ["model", TINY_MODEL, "baseline", THUMBNAIL_MODEL]
    assert [line.split()[0] for line in lines[2:6]] == ["Recall@1", "Recall@5", "Recall@10", "Recall@20"]
    assert any(line.startswith("top-1 error median (m)") for line in lines)
    assert any(line.startswith("consensus error p90 (m)") for line in lines)
    assert lines[-1] == f"stored as eval run(s) {runs_before + 1}, {runs_before + 2} (view v_eval_predictions)"

    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT r.id, r.method, m.name, r.split, r.version, r.metrics FROM eval_runs r "
                                    "JOIN models m ON m.id = r.model_id WHERE r.id > :b ORDER BY r.id"),
                            {"b": runs_before}).all()
        assert [(r.method, r.name, r.split, r.version) for r in runs] == [
            ("model", TINY_MODEL, "test", "v1"), ("baseline", THUMBNAIL_MODEL, "test", "v1")]
        queries = runs[0].metrics["queries"]
        view = conn.execute(sa.text(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids, bool_and(GeometryType(geom) = 'LINESTRING') AS lines, "
            "bool_and(ST_SRID(geom) = 4326) AS srid, "
            "bool_and(abs(error_m - ST_Distance(ST_Transform(query_geom, 3006), ST_Transform(predicted_geom, 3006))) < 0.05) AS err, "
            "bool_and(ST_Equals(ST_StartPoint(geom), query_geom) AND ST_Equals(ST_EndPoint(geom), predicted_geom)) AS ends, "
            "avg(correct::int) AS r1 FROM v_eval_predictions WHERE run_id = :r"), {"r": runs[0].id}).one()
        registered = dict(conn.execute(sa.text(
            "SELECT f_geometry_column, type FROM geometry_columns WHERE f_table_name = 'v_eval_predictions' "
            "AND srid = 4326")).all())
    assert view.n == view.ids == queries and view.lines and view.srid and view.err and view.ends
    assert float(view.r1) == pytest.approx(runs[0].metrics["recall"]["1"])
    assert registered == {"geom": "LINESTRING", "consensus_line": "LINESTRING", "query_geom": "POINT",
                          "predicted_geom": "POINT", "consensus_geom": "POINT"}


def test_json_report_and_baseline_alone(cli, subset):
    res = cli("evaluate", "--baseline", "thumbnail", "--split", "test", "--version", "v1", "--json", "-k", "10")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["split"] == "test" and out["version"] == "v1" and out["k"] == 10 and out["search"] == "exact"
    [method] = out["methods"]
    assert method["model"] == THUMBNAIL_MODEL and method["method"] == "baseline"
    expected = numpy_protocol(get_engine(subset.url), THUMBNAIL_MODEL, 10, 5)
    assert method["recall"] == {str(n): expected["recall"][n] for n in (1, 5, 10)}
    assert set(method["top1_error_m"]) == {"median", "p75", "p90", "mean"}


def test_evaluation_errors(cli, subset):
    engine = get_engine(subset.url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                             "VALUES ('half', 'thumbnail', 768, 16, 'ready')"))
        conn.execute(sa.text("INSERT INTO embeddings (model_id, image_id, embedding) "
                             "SELECT (SELECT id FROM models WHERE name = 'half'), image_id, embedding "
                             "FROM embeddings WHERE model_id = (SELECT id FROM models WHERE name = :t) "
                             "ORDER BY image_id LIMIT 10"), {"t": THUMBNAIL_MODEL})
        images = conn.execute(sa.text("SELECT count(*) FROM images WHERE split = 'test'")).scalar()
    res = cli("evaluate", "--model", "half", "--split", "test")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-2:] == [
        f"Error: model 'half' lacks embeddings for {images - 10} of {images} images of split test",
        "Hint: run 'geoloc embed --model half --split test'"]
    res = cli("evaluate", "--model", "nope")
    assert res.exit_code == 1 and res.stderr == "Error: model 'nope' not found\nHint: see 'geoloc models list'\n"
    res = cli("evaluate", "--model", TINY_MODEL, "--split", "val")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-2:] == ["Error: split val has no images",
                                            "Hint: import them with 'geoloc ingest images DIR'"]
    res = cli("evaluate", "--model", TINY_MODEL, "-k", "5", "--consensus-k", "6")
    assert res.exit_code == 1 and res.stderr == "Error: --consensus-k 6: must be between 1 and -k (5)\n"
    res = cli("evaluate")
    assert res.exit_code == 1 and res.stderr == "Error: name a --model to evaluate (or --baseline thumbnail alone)\n"


# ------------------------------------------------------------------------------- distractors

@contextmanager
def moved_to(url: str, split: str, n: int):
    """The images of the subset's last N test locations moved to SPLIT, moved back afterwards so the
    module's other tests see the subset unchanged; the number of images moved."""
    engine = get_engine(url)
    with engine.begin() as conn:
        moved = conn.execute(sa.text(
            "UPDATE images SET split = :s WHERE location_id IN (SELECT DISTINCT location_id FROM images "
            "WHERE split = 'test' ORDER BY location_id DESC LIMIT :n)"), {"s": split, "n": n}).rowcount
    try:
        yield moved
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE images SET split = 'test' WHERE split = :s"), {"s": split})


def test_distractors_join_the_database_and_never_query(cli, subset):
    engine = get_engine(subset.url)
    with moved_to(subset.url, "val", 3) as moved:
        plain = numpy_protocol(engine, TINY_MODEL, 20, 5)
        expected = numpy_protocol(engine, TINY_MODEL, 20, 5, distractors=("val",))
        res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1", "--distractors", "val",
                  "--json")
        table = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1", "--distractors", "val")
        with begin(subset.url) as conn:
            [raw] = evaluate_post(conn, TINY_MODEL, [()], "test", "v1", k=20, consensus_k=5, store=False,
                                  distractors=("val",))
            moved_ids = set(conn.execute(sa.text("SELECT id FROM images WHERE split = 'val'")).scalars())
    assert moved > 0 and res.exit_code == 0 and table.exit_code == 0, res.output + table.output
    out = json.loads(res.stdout)
    assert out["split"] == "test" and out["distractors"] == ["val"]
    model, baseline = out["methods"]
    assert model["queries"] == baseline["queries"] == expected["queries"] == plain["queries"]
    assert model["database"] == baseline["database"] == expected["database"] == plain["database"] + moved
    assert model["recall"] == {str(n): expected["recall"][n] for n in (1, 5, 10, 20)}
    assert table.stdout.splitlines()[0].startswith(
        f"split test v1 + distractors val: {expected['queries']} queries, {expected['database']} database images")
    # the numpy path of --post searches the same database
    assert (raw.queries, raw.database) == (expected["queries"], expected["database"])
    assert raw.recall == expected["recall"]
    assert {o.query_image_id: o.top1_location_id for o in raw.outcomes} == expected["top1_location"]
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT r.metrics, array_agg(p.query_image_id) AS queries FROM eval_runs r "
            "JOIN eval_predictions p ON p.run_id = r.id WHERE r.id = :r GROUP BY r.id"), {"r": model["run_id"]}).one()
    assert stored.metrics["distractors"] == ["val"] and stored.metrics["database"] == expected["database"]
    assert len(stored.queries) == expected["queries"] and not moved_ids & set(stored.queries)


def test_distractor_errors(cli, subset):
    res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--distractors", "test")
    assert res.exit_code == 1
    assert res.stderr == "Error: --distractors 'test': the split evaluated is in the database already\n"
    res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1", "--distractors", "train")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-2:] == ["Error: split train v1 has no images to add as distractors",
                                            "Hint: import them with 'geoloc ingest images DIR'"]
    res = cli("evaluate", "--model", TINY_MODEL, "--cells", "--distractors", "val")
    assert res.exit_code == 1 and res.stderr == "Error: --distractors does not combine with --cells\n"
    res = cli("evaluate", "--model", TINY_MODEL, "--distractors", "city")
    assert res.exit_code == 2 and "'city' is not one of 'train', 'val', 'test'" in res.stderr


# ------------------------------------------------------------------------------- post-processing

@contextmanager
def train_copies(url: str, model: str):
    """The split's test images copied as 'train' images with the model's embeddings (for the whitening
    fit), removed again afterwards so the module's other tests see the subset unchanged."""
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO images (location_id, heading, time_index, root, path, sha256, bytes, width, height, "
            "split, version) SELECT location_id, heading, time_index, root, 'train-copy/' || path, sha256, bytes, "
            "width, height, 'train', version FROM images WHERE split = 'test'"))
        n = conn.execute(sa.text(
            "INSERT INTO embeddings (model_id, image_id, embedding) "
            "SELECT e.model_id, c.id, e.embedding FROM embeddings e JOIN images i ON i.id = e.image_id "
            "JOIN images c ON c.path = 'train-copy/' || i.path JOIN models m ON m.id = e.model_id "
            "WHERE m.name = :m"), {"m": model}).rowcount
    try:
        yield n
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM images WHERE split = 'train'"))


def test_post_processed_runs_are_side_by_side_and_stored(cli, subset):
    engine = get_engine(subset.url)
    with engine.connect() as conn:
        runs_before = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM eval_runs")).scalar()
    with train_copies(subset.url, TINY_MODEL) as fitted:
        res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1",
                  "--post", "whiten", "--post", "qe", "--qe-n", "2", "--whiten-dims", "8")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[1] == "post-processing: alpha=3.0, qe_n=2, dba_n=3, whiten_dims=8, whiten_shrinkage=0.1"
    assert lines[2].split() == ["model", TINY_MODEL, "model+whiten", TINY_MODEL, "model+qe", TINY_MODEL,
                                "model+whiten+qe", TINY_MODEL, "baseline", THUMBNAIL_MODEL]
    recall1 = lines[3].split()
    assert recall1[0] == "Recall@1" and len(recall1) == 6
    assert lines[-1] == (f"stored as eval run(s) {', '.join(str(runs_before + i) for i in range(1, 6))} "
                         "(view v_eval_predictions)")
    with engine.connect() as conn:
        runs = conn.execute(sa.text(
            "SELECT r.id, r.method, m.name, r.metrics, (SELECT count(*) FROM eval_predictions p "
            "WHERE p.run_id = r.id) AS predictions FROM eval_runs r JOIN models m ON m.id = r.model_id "
            "WHERE r.id > :b ORDER BY r.id"), {"b": runs_before}).all()
    assert [(r.method, r.name) for r in runs] == [
        ("model", TINY_MODEL), ("model+whiten", TINY_MODEL), ("model+qe", TINY_MODEL),
        ("model+whiten+qe", TINY_MODEL), ("baseline", THUMBNAIL_MODEL)]
    queries = runs[0].metrics["queries"]
    for r, shown in zip(runs, recall1[1:]):
        assert 0.0 <= r.metrics["recall"]["1"] <= r.metrics["recall"]["5"] <= r.metrics["recall"]["10"] <= 1.0
        assert f"{r.metrics['recall']['1']:.3f}" == shown
        assert r.metrics["queries"] == r.predictions == queries
        assert r.metrics["database"] == runs[0].metrics["database"]
    assert runs[0].metrics["search"] == "exact" and "post" not in runs[0].metrics
    assert runs[1].metrics["search"] == "exact (numpy)"
    assert runs[1].metrics["post"] == {"steps": ["whiten"], "alpha": 3.0, "qe_n": 2, "dba_n": 3, "whiten_dims": 8,
                                       "whiten_shrinkage": 0.1,
                                       "whitening_fit": {"split": "train", "vectors": fitted, "dims": 8,
                                                        "method": "learned (within-place scatter)"}}
    assert runs[2].metrics["post"]["steps"] == ["qe"] and "whitening_fit" not in runs[2].metrics["post"]
    assert runs[3].metrics["post"]["steps"] == ["whiten", "qe"]


def test_numpy_search_reproduces_the_sql_protocol(subset):
    """With no post-processing the numpy path finds what knn_all.sql finds: same queries, same database."""
    with begin(subset.url) as conn:
        sql_run = evaluate_model(conn, TINY_MODEL, "test", "v1", k=20, consensus_k=5, store=False)
        [raw] = evaluate_post(conn, TINY_MODEL, [()], "test", "v1", k=20, consensus_k=5, store=False)
    assert (raw.queries, raw.database) == (sql_run.queries, sql_run.database)
    assert raw.recall == sql_run.recall
    assert raw.top1_error_m == pytest.approx(sql_run.top1_error_m, abs=1e-3)
    assert raw.consensus_error_m == pytest.approx(sql_run.consensus_error_m, abs=1e-3)
    assert ({o.query_image_id: (o.top1_location_id, o.first_correct_rank) for o in raw.outcomes}
            == {o.query_image_id: (o.top1_location_id, o.first_correct_rank) for o in sql_run.outcomes})


def test_post_processing_errors(cli, subset):
    engine = get_engine(subset.url)
    with engine.connect() as conn:
        runs_before = conn.execute(sa.text("SELECT count(*) FROM eval_runs")).scalar()
    res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--post", "whiten")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-2:] == [
        f"Error: model '{TINY_MODEL}' has 0 embeddings of split train: the whitening is fitted on them and "
        "needs at least 2", f"Hint: run 'geoloc embed --model {TINY_MODEL} --split train'"]
    with engine.connect() as conn:  # the raw run of the same command is not kept either
        assert conn.execute(sa.text("SELECT count(*) FROM eval_runs")).scalar() == runs_before
    with train_copies(subset.url, TINY_MODEL):  # one image per place left: no within-place scatter to learn
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM images WHERE split = 'train' AND id NOT IN "
                                 "(SELECT min(id) FROM images WHERE split = 'train' GROUP BY location_id, heading)"))
        res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--post", "whiten")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-1] == (f"Error: model '{TINY_MODEL}': cannot whiten its embeddings of split "
                                           "train (learned whitening needs a place with at least 2 descriptors)")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM eval_runs")).scalar() == runs_before
    res = cli("evaluate", "--baseline", "thumbnail", "--post", "qe")
    assert res.exit_code == 1 and res.stderr == "Error: --post needs a --model to post-process\n"
    res = cli("evaluate", "--model", TINY_MODEL, "--post", "qe", "--qe-n", "0")
    assert res.exit_code == 1 and res.stderr == "Error: --qe-n 0: must be at least 1\n"
    res = cli("evaluate", "--model", TINY_MODEL, "--post", "all", "--whiten-shrinkage", "-1")
    assert res.exit_code == 1 and res.stderr == "Error: --whiten-shrinkage -1.0: must be a number >= 0\n"
    res = cli("evaluate", "--model", TINY_MODEL, "--post", "pca")
    assert res.exit_code == 2 and "'pca' is not one of 'whiten', 'qe', 'dba', 'all'" in res.stderr
    res = cli("evaluate", "--model", TINY_MODEL, "--cells", "--post", "qe")
    assert res.exit_code == 1 and res.stderr == "Error: --post does not combine with --cells\n"


# a place signal in 15 dimensions, and a nuisance shared by every image along dimension 0 that is
# much larger than the place differences: raw cosine similarity mostly compares the nuisance
DIM, NUISANCE, NOISE = 16, 20.0, 0.3


def _synthetic_images(rng, first_location: int, locations: int, per_location: int) -> list[dict]:
    place = rng.normal(size=(locations, DIM))
    place[:, 0] = 0.0
    rows = []
    for i in range(locations):
        for t in range(per_location):
            v = place[i] + rng.normal(scale=NOISE, size=DIM)
            v[0] += rng.normal(scale=NUISANCE)
            rows.append({"location_id": first_location + i, "time_index": t,
                         "v": "[" + ",".join(f"{x:.7f}" for x in v / np.linalg.norm(v)) + "]"})
    return rows


def test_whitening_beats_raw_when_a_nuisance_direction_dominates(db_url):
    rng = np.random.default_rng(0)
    test = _synthetic_images(rng, 1, 30, 4)  # per location: 1 query (time 0) + 3 database images
    train = _synthetic_images(rng, 101, 40, 4)
    engine = get_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                             "VALUES ('synthetic', 'test', :d, 0, 'ready')"), {"d": DIM})
        for split, rows in (("test", test), ("train", train)):
            ids = sorted({r["location_id"] for r in rows})
            conn.execute(sa.text(  # 1 km apart along a meridian of Stockholm: only the same place is within 25 m
                "INSERT INTO locations (id, geom, buffer_m, order_no, dist_to_origin_m, split, source) "
                "SELECT g, ST_SetSRID(ST_MakePoint(18.05, 59.2 + g * 0.009), 4326), 0, g, 0, :s, 'test' "
                "FROM unnest(CAST(:ids AS integer[])) AS g"), {"ids": ids, "s": split})
            for r in rows:
                conn.execute(sa.text(
                    "WITH i AS (INSERT INTO images (location_id, heading, time_index, root, path, sha256, bytes, "
                    "width, height, split) VALUES (:location_id, 0, :time_index, '/synthetic', "
                    ":location_id || '_' || :time_index || '.jpg', repeat('0', 64), 0, 0, 0, :s) RETURNING id) "
                    "INSERT INTO embeddings (model_id, image_id, embedding) "
                    "SELECT (SELECT id FROM models WHERE name = 'synthetic'), i.id, CAST(:v AS vector) FROM i"),
                    {**r, "s": split})
    with begin(db_url) as conn:
        raw = evaluate_model(conn, "synthetic", "test", k=5, consensus_k=1)
        [whitened] = evaluate_post(conn, "synthetic", [("whiten",)], "test", k=5, consensus_k=1)
    assert (raw.queries, raw.database) == (whitened.queries, whitened.database) == (30, 90)
    assert 0.0 <= raw.recall[1] < whitened.recall[1] <= 1.0
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT method, (metrics->'recall'->>'1')::float FROM eval_runs")).all())
    assert stored == {"model": raw.recall[1], "model+whiten": whitened.recall[1]}
