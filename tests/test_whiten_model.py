"""`geoloc models whiten`: a new registered model that is a model with its learned whitening built in.
Its stored embeddings are the NumPy whitening of its source's, its search through the HNSW index finds
what exact NumPy search finds, bad requests change nothing, and its weights are checked when loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geoloc.db.engine import begin, get_engine
from geoloc.errors import InputError, NotFound
from geoloc.db import models as db_models
from geoloc.model import registry
from geoloc.retrieval import search as S
from geoloc.retrieval.embed import load_embedder
from geoloc.retrieval.postprocess import fit_whitening
from retrieval_data import TINY_MODEL, first_test_locations, make_tiny_model, subset, subset_fixture  # noqa: F401

pytestmark = pytest.mark.slow  # imports a subset and embeds it with a CNN twice (about a minute here)
subset_db = subset_fixture(n_locations=5, models=(TINY_MODEL,))
WHITENED = "tiny-w"
DIMS, SHRINKAGE = 16, 0.05  # the tiny model has 32 dimensions
NAME_ERROR = "use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"


def _geoloc(*args):
    from geoloc.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def whitened(subset_db, tmp_path_factory):
    """TINY whitened (fitted on the subset's test split) into WHITENED, then embedded, by the CLI."""
    data = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOLOC_DATABASE_URL", subset_db.url)
        mp.setenv("GEOLOC_DATA_DIR", str(data))
        made = _geoloc("models", "whiten", TINY_MODEL, "--name", WHITENED, "--split", "test",
                       "--dims", DIMS, "--shrinkage", SHRINKAGE)
        embedded = _geoloc("embed", "--model", WHITENED)
    return made, embedded, data


@pytest.fixture
def data_dir(whitened, monkeypatch) -> Path:
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(whitened[2]))
    return whitened[2]


def _model(engine, name: str):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT * FROM models WHERE name = :n"), {"n": name}).one()


def _embeddings(engine, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, vectors) of a model's stored embeddings, by image id."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT e.image_id, e.embedding::real[] AS v FROM embeddings e JOIN models m ON m.id = e.model_id "
            "WHERE m.name = :n ORDER BY e.image_id"), {"n": name}).all()
    return np.array([r.image_id for r in rows]), np.array([r.v for r in rows], dtype=np.float64)


def _places(engine, ids: np.ndarray) -> list[str]:
    """The place (location and heading) of each image of IDS, as a label."""
    with engine.connect() as conn:
        place = dict(conn.execute(sa.text("SELECT id, location_id || '/' || heading FROM images")).all())
    return [place[int(i)] for i in ids]


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _state(engine, data: Path) -> tuple:
    """What a refused request must leave unchanged: the models table and the model folders."""
    with engine.connect() as conn:
        models = conn.execute(sa.text("SELECT id, name, status, weights_sha256 FROM models ORDER BY id")).all()
    return models, sorted(p.relative_to(data) for p in data.rglob("*"))


def test_the_whitened_models_embeddings_are_the_numpy_whitening_of_its_sources(subset, whitened):
    made, embedded, data = whitened
    assert made.exit_code == 0, made.output
    assert embedded.exit_code == 0, embedded.output
    engine = get_engine(subset.url)
    src, dst = _model(engine, TINY_MODEL), _model(engine, WHITENED)
    src_ids, src_vectors = _embeddings(engine, TINY_MODEL)
    dst_ids, dst_vectors = _embeddings(engine, WHITENED)
    assert len(src_ids) == subset.images and np.array_equal(dst_ids, src_ids)

    # the whitening fitted on the stored source embeddings, applied to the source network's float32
    # outputs (what the whitened network computes), then stored as 16-bit floats: rounded by at most
    # 2^-11 of each value
    with begin() as conn:
        files = conn.execute(sa.text("SELECT root || '/' || path FROM images WHERE id = ANY(:ids) ORDER BY id"),
                             {"ids": src_ids.tolist()}).scalars().all()
        src_outputs = load_embedder(conn, TINY_MODEL).embed([Path(f) for f in files])
    # the subset's test split has several images of each place: the whitening is the learned one
    places = _places(engine, src_ids)
    assert len(set(places)) < len(places)
    expected = fit_whitening(src_vectors, DIMS, SHRINKAGE, np.array(places)).apply(src_outputs)
    assert dst_vectors.shape == (subset.images, DIMS)
    np.testing.assert_allclose(dst_vectors, expected, rtol=2.0 ** -11, atol=1e-4)

    assert (dst.status, dst.backbone, dst.input_size, dst.dim) == ("ready", src.backbone, src.input_size, DIMS)
    assert dst.hyperparams["whiten"] == {"from": {"name": TINY_MODEL, "id": src.id},
                                         "method": "learned (within-place scatter)", "base_dim": 32, "dims": DIMS,
                                         "dims_requested": DIMS, "shrinkage": SHRINKAGE, "fit_split": "test",
                                         "fit_count": subset.images}
    assert Path(dst.weights_path) == data / "models" / str(dst.id) / "best.weights.h5"
    assert dst.weights_sha256 == _sha256(dst.weights_path)
    assert made.stdout.splitlines()[0].startswith(
        f"model '{WHITENED}' (id {dst.id}, dim {DIMS}): '{TINY_MODEL}' (dim 32) + whitening fitted on "
        f"{subset.images} embeddings of split test (shrinkage 0.05)")
    assert f"model '{WHITENED}' (dim {DIMS}), all images: {subset.images} embedded now" in embedded.stdout


def test_search_through_the_hnsw_index_finds_the_exact_numpy_top1(cli, subset, whitened, shared_data, monkeypatch):
    engine = get_engine(subset.url)
    # photos of two Test v1 locations that are not in the database
    extra = first_test_locations(shared_data, len(subset.location_ids) + 2)
    photos = [extra[loc][0] for loc in sorted(extra)[len(subset.location_ids):]]
    assert not {int(p.name.split("_")[0]) for p in photos} & set(subset.location_ids)

    with begin() as conn:
        src_queries = load_embedder(conn, TINY_MODEL).embed(photos)
    src_ids, src_vectors = _embeddings(engine, TINY_MODEL)
    whitening = fit_whitening(src_vectors, DIMS, SHRINKAGE, np.array(_places(engine, src_ids)))
    queries = whitening.apply(src_queries)
    ids, vectors = _embeddings(engine, WHITENED)
    sims = queries @ (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T
    order = np.argsort(-sims, axis=1)
    for row, o in zip(sims, order):
        assert row[o[0]] - row[o[1]] > 1e-4  # a clear best match: the comparison below is meaningful

    # every new connection plans without sequential scans and sorts (on a few hundred rows reading
    # the model's rows and sorting them is rightly cheaper): the knn query must take the HNSW index
    monkeypatch.setenv("PGOPTIONS", "-c enable_seqscan=off -c enable_sort=off")
    engine.dispose()
    try:
        dst = _model(engine, WHITENED)
        with begin() as conn:
            S.set_search_options(conn)
            plan = "\n".join(S.explain_lines(conn, dst.id, DIMS, queries[0], 3, explain=S.EXPLAIN_PLAN))
        assert f"Index Scan using embeddings_hnsw_{dst.id} on embeddings" in plan, plan
        res = cli("search", *photos, "--model", WHITENED, "-k", "3", "--json")
    finally:
        engine.dispose()
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for result, row, o in zip(out, sims, order):
        first = result["neighbours"][0]
        assert first["image_id"] == ids[o[0]]
        assert first["distance"] == pytest.approx(1.0 - row[o[0]], abs=1e-4)


def test_refused_requests_name_the_problem_and_change_nothing(cli, subset, data_dir, tmp_path):
    engine = get_engine(subset.url)
    make_tiny_model(tmp_path, "tiny2")  # ready, never embedded
    with begin() as conn:
        db_models.register_model(conn, "half", "mobilenetv3small", 32, 64, {}, None, status="training")
    before = _state(engine, data_dir)
    cases = [
        ((TINY_MODEL, "--name", WHITENED), [f"Error: model '{WHITENED}' already exists",
                                            "Hint: choose another --name"]),
        ((TINY_MODEL, "--name", TINY_MODEL), [f"Error: model '{TINY_MODEL}' already exists",
                                              "Hint: choose another --name"]),
        ((TINY_MODEL, "--name", "../escape"), [f"Error: invalid model name '../escape': {NAME_ERROR}"]),
        ((TINY_MODEL, "--name", "w"), ["Error: split train has no images: the whitening is fitted on its embeddings",
                                       "Hint: import them with 'geoloc ingest images DIR', or fit on another --split"]),
        (("tiny2", "--name", "w", "--split", "test"), [
            f"Error: model 'tiny2' lacks embeddings for {subset.images} of {subset.images} images of split test: "
            "the whitening is fitted on them", "Hint: run 'geoloc embed --model tiny2 --split test'"]),
        (("nope", "--name", "w"), ["Error: model 'nope' not found", "Hint: see 'geoloc models list'"]),
        (("half", "--name", "w"), [
            "Error: model 'half' is not ready (status training): only a finished model can be whitened",
            "Hint: finish its training with 'geoloc train --name half --resume'"]),
        ((WHITENED, "--name", "w", "--split", "test"), [
            f"Error: model '{WHITENED}' is whitened already (from model '{TINY_MODEL}')",
            f"Hint: whiten '{TINY_MODEL}' instead"]),
        ((TINY_MODEL, "--name", "w", "--split", "test", "--dims", "0"), ["Error: --dims 0: must be at least 1"]),
        ((TINY_MODEL, "--name", "w", "--split", "test", "--shrinkage", "-1"),
         ["Error: --shrinkage -1.0: must be a number >= 0"]),
    ]
    for args, expected in cases:
        res = cli("models", "whiten", *args)
        assert res.exit_code == 1, (args, res.output)
        assert res.stderr.splitlines() == expected, args
    assert _state(engine, data_dir) == before


def test_weights_are_checked_at_load_like_any_models(cli, subset, data_dir):
    res = cli("models", "whiten", TINY_MODEL, "--name", "tiny-w2", "--split", "test", "--dims", 8)
    assert res.exit_code == 0, res.output
    model, row = registry.load_embedder(None, "tiny-w2")
    assert row.dim == 8 and model.output_shape[-1] == 8
    path = Path(row.weights_path)
    assert path.parent.parent == data_dir / "models"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one changed byte
    path.write_bytes(bytes(data))
    message = (f"{path}: weights of model 'tiny-w2' do not match their registered sha256 "
               "(the file changed after training)")
    with pytest.raises(InputError) as err:
        registry.load_embedder(None, "tiny-w2")
    assert str(err.value) == message
    res = cli("embed", "--model", "tiny-w2")
    assert res.exit_code == 1 and res.stderr == f"Error: {message}\n"

    # the source's weights are checked too before anything is made from them
    src = Path(db_models.get_model(None, TINY_MODEL).weights_path)
    original = src.read_bytes()
    try:
        src.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        res = cli("models", "whiten", TINY_MODEL, "--name", "tiny-w3", "--split", "test")
    finally:
        src.write_bytes(original)
    assert res.exit_code == 1
    assert res.stderr == (f"Error: {src}: weights of model '{TINY_MODEL}' do not match their registered sha256 "
                          "(the file changed after training)\n")
    with pytest.raises(NotFound):
        db_models.get_model(None, "tiny-w3")
