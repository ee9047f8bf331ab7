"""Re-ranking by SIFT geometry: the inliers tell the same scene from other places on real images, the
order follows similarity + weight x inliers, `geoloc search --rerank` puts the photographed scene first,
`geoloc evaluate --rerank` stores its run beside the model's, and every error is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from geoloc.db.engine import get_engine
from geoloc.retrieval import rerank as R
from retrieval_data import TINY_MODEL, first_test_locations, subset, subset_fixture  # noqa: F401

subset_db = subset_fixture()


def _crop(src: Path, dest: Path) -> Path:
    """The central 80 % of SRC scaled back to its size: the same scene, as if a step closer."""
    with Image.open(src) as im:
        w, h = im.size
        im.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w, h)).save(dest, quality=90)
    return dest


def test_inliers_tell_the_same_scene_from_other_places(shared_data, tmp_path):
    chosen = first_test_locations(shared_data, 4)
    verifier = R.Verifier()
    for location, files in chosen.items():
        query = _crop(files[0], tmp_path / f"{location}.jpg")
        same = verifier.inliers(query, files[0])
        others = [verifier.inliers(query, other[0]) for loc, other in chosen.items() if loc != location]
        assert same > 3 * max(others), (location, same, others)
    # an image against itself: every match is one scene
    first = next(iter(chosen.values()))[0]
    assert verifier.inliers(first, first) == len(verifier.features(first)[0]) > 100


def _unit(*rows):
    v = np.array(rows, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_matches_keep_mutual_nearest_neighbours_that_pass_the_ratio_test():
    a = _unit([1, 0, 0, 0],  # its twin b0: kept
              [0, 1, 0, 0],  # b1 and b2 are as near as each other: fails the ratio test
              [0, 0, 1, 0.3],  # nearest b4, far from the rest, but b4's nearest is a3: not mutual
              [0, 0, 1, 0])  # b4's twin: kept
    b = _unit([1, 0, 0, 0], [0, 1, 0, 0.1], [0, 1, 0, -0.1], [0, 0, 0, 1], [0, 0, 1, 0])
    ia, ib = R.matches(a, b)
    assert ia.tolist() == [0, 3] and ib.tolist() == [0, 4]
    assert [x.tolist() for x in R.matches(b, b)] == [[0, 1, 2, 3, 4]] * 2  # every descriptor its own twin


def test_root_sift_is_the_square_root_of_the_l1_normalised_histogram():
    root = R.root_sift(np.array([[4, 0, 12] + [0] * 125, [1] * 128], np.uint8))
    assert np.allclose(root[0, :3], [0.5, 0, np.sqrt(0.75)]) and np.allclose(root[1], 1 / np.sqrt(128))
    assert np.allclose(np.linalg.norm(root, axis=1), 1.0)


def test_order_is_similarity_plus_weighted_inliers():
    # scores 0.80 + 0.02, 0.79 + 0.04, 0.70 + 0.2
    assert R.order([0.80, 0.79, 0.70], [10, 20, 100], 0.002) == [2, 1, 0]
    assert R.order([0.80, 0.79, 0.70], [10, 20, 100], 0.0) == [0, 1, 2]
    assert R.order([0.5, 0.5, 0.4], [0, 0, 0], 0.002) == [0, 1, 2]  # ties keep the model's order
    assert R.order([0.80, 0.79], [10, 16], 0.002) == [1, 0]  # 0.820 < 0.822


def test_params_out_of_range_are_named():
    assert R.RerankParams().problems() == []
    assert [p[0] for p in R.RerankParams(0, -1.0).problems()] == ["top", "weight"]
    assert [p[0] for p in R.RerankParams(R.MAX_TOP + 1, float("nan")).problems()] == ["top", "weight"]


def _image(engine, location_id: int, heading: int):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT id, root || '/' || path AS file FROM images WHERE location_id = :l AND heading = :h "
            "ORDER BY time_index, id LIMIT 1"), {"l": location_id, "h": heading}).one()


def test_search_rerank_puts_the_photographed_scene_first(cli, subset, tmp_path):
    engine = get_engine(subset.url)
    img = _image(engine, subset.location_ids[3], 2)
    photo = _crop(Path(img.file), tmp_path / "photo.jpg")
    plain = cli("search", photo, "--model", TINY_MODEL, "-k", "20", "--no-cells", "--json")
    assert plain.exit_code == 0, plain.output
    plain_ids = [n["image_id"] for n in json.loads(plain.stdout)[0]["neighbours"]]
    assert img.id in plain_ids  # the untrained model finds the scene somewhere in its top 20 ...
    res = cli("search", photo, "--model", TINY_MODEL, "-k", "5", "--rerank", "--rerank-top", "20", "--json")
    assert res.exit_code == 0, res.output
    [out] = json.loads(res.stdout)
    got = out["neighbours"]
    assert got[0]["image_id"] == img.id  # ... and geometry puts it first
    assert out["best"]["location_id"] == subset.location_ids[3]
    assert [n["rank"] for n in got] == [1, 2, 3, 4, 5]
    assert {n["image_id"] for n in got} <= set(plain_ids)
    scores = [1.0 - n["distance"] + R.DEFAULT_WEIGHT * n["inliers"] for n in got]
    assert scores == sorted(scores, reverse=True)
    # the table shows the inliers
    table = cli("search", photo, "--model", TINY_MODEL, "-k", "3", "--rerank", "--rerank-top", "20")
    assert table.exit_code == 0, table.output
    assert "inliers" in table.stdout.splitlines()[1]
    assert f"{got[0]['inliers']:>7}  " in table.stdout.splitlines()[2]
    # without --rerank the JSON says nothing was verified
    assert all(n["inliers"] is None for n in json.loads(plain.stdout)[0]["neighbours"])


def _runs(engine) -> list[tuple[str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT method, metrics FROM eval_runs ORDER BY id"))
        return [(r.method, r.metrics) for r in rows]


def test_evaluate_rerank_is_its_own_run_beside_the_model(cli, subset):
    engine = get_engine(subset.url)
    before = len(_runs(engine))
    res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1", "--rerank", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["rerank"]["top"] == R.DEFAULT_TOP and out["rerank"]["weight"] == R.DEFAULT_WEIGHT
    model, reranked, baseline = out["methods"]
    assert (model["method"], reranked["method"], baseline["method"]) == ("model", "model+rerank", "baseline")
    assert reranked["queries"] == model["queries"] and reranked["database"] == model["database"]
    # the same candidates re-ordered: recall beyond the re-ranked ten is unchanged ...
    assert reranked["recall"]["10"] == model["recall"]["10"] and reranked["recall"]["20"] == model["recall"]["20"]
    # ... and geometry corrects the untrained model's first guesses
    assert reranked["recall"]["1"] > model["recall"]["1"]
    runs = _runs(engine)[before:]
    assert [m for m, _ in runs] == ["model", "model+rerank", "baseline"]
    assert runs[1][1]["rerank"]["top"] == R.DEFAULT_TOP and runs[1][1]["recall"] == reranked["recall"]
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM eval_predictions WHERE run_id = :r"),
                              {"r": reranked["run_id"]}).scalar_one()
    assert stored == reranked["queries"]
    # the plain run beside it is the model's run as `geoloc evaluate` stores it without --rerank
    plain = json.loads(cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1", "--json").stdout)
    same = ("method", "queries", "database", "recall", "top1_error_m", "consensus_error_m")
    assert {key: plain["methods"][0][key] for key in same} == {key: model[key] for key in same}
    table = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1", "--rerank",
                "--rerank-top", "5", "-k", "10")
    assert table.exit_code == 0, table.output
    assert "re-ranking (SIFT + MAGSAC inliers): top=5, weight=0.01" in table.stdout
    assert f"model+rerank {TINY_MODEL}" in table.stdout


def test_rerank_errors(cli, subset):
    engine = get_engine(subset.url)
    img = _image(engine, subset.location_ids[0], 0)
    evaluate = ("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1")
    cases = [
        ((*evaluate, "--rerank", "--rerank-top", "0"), "Error: --rerank-top 0: must be between 1 and 100"),
        ((*evaluate, "--rerank", "--rerank-weight", "-1"), "Error: --rerank-weight -1.0: must be a number >= 0"),
        ((*evaluate, "--rerank", "--rerank-top", "30"),
         "Error: --rerank-top 30: must be at most -k (20), the neighbours retrieved"),
        (("evaluate", "--baseline", "thumbnail", "--rerank"),
         "Error: --rerank needs a --model whose neighbours it re-ranks"),
        ((*evaluate, "--rerank", "--cells"), f"Error: model '{TINY_MODEL}' has no cell heads"),
        (("search", img.file, "--model", TINY_MODEL, "--rerank", "--cells"),  # the hybrid search, re-ranked
         f"Error: model '{TINY_MODEL}' has no cell heads"),
        (("search", img.file, "--model", TINY_MODEL, "--rerank", "--rerank-top", "101"),
         "Error: --rerank-top 101: must be between 1 and 100"),
    ]
    for args, message in cases:
        res = cli(*args)
        assert res.exit_code != 0 and res.stderr.splitlines()[0] == message, (args, res.output)


def test_a_missing_image_file_is_named_and_nothing_is_stored(cli, subset, tmp_path):
    engine = get_engine(subset.url)
    img = _image(engine, subset.location_ids[1], 1)  # a query of Test v1: read by every re-ranked run
    before = _runs(engine)
    moved = shutil.move(img.file, tmp_path / "away.jpg")
    try:
        res = cli("evaluate", "--model", TINY_MODEL, "--split", "test", "--version", "v1", "--rerank")
        assert res.exit_code != 0, res.output
        assert res.stderr.splitlines()[0] == f"Error: {img.file}: file not found"
        assert _runs(engine) == before
        # the moved file as the photo: the database image it was, now missing, is its nearest
        res = cli("search", moved, "--model", TINY_MODEL, "--rerank")
        assert res.exit_code != 0
        assert res.stderr.splitlines()[0] == f"Error: {img.file}: file not found"
    finally:
        shutil.move(moved, img.file)
