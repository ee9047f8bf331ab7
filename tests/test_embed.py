"""`geoloc embed`: vectors stored in image order, resumable, dimension-checked, indexed per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from geoloc.db.engine import begin
from geoloc.errors import DimensionMismatch
from geoloc.retrieval import index as hnsw
from geoloc.retrieval.baseline import THUMBNAIL_DIM, thumbnail_vector
from geoloc.retrieval.embed import store_embeddings
from retrieval_data import TINY_MODEL, load_subset, make_tiny_model


@pytest.fixture
def imported(db_url, shared_data, tmp_path):
    """Three real Test v1 locations (~75 images) in a fresh database."""
    return load_subset(shared_data, tmp_path, 3)


@pytest.fixture
def small(imported, tmp_path):
    """... and the untrained tiny model."""
    return (*imported, make_tiny_model(tmp_path))


def _synthetic_model(dim: int) -> int:
    with begin() as conn:
        return conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                                    "VALUES (:n, 'synthetic', :d, 64, 'ready') RETURNING id"),
                            {"n": f"synthetic-{dim}", "d": dim}).scalar()


def _stored(engine, model_id: int):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT i.root || '/' || i.path AS file, e.embedding::real[] AS embedding, vector_dims(e.embedding) AS dims "
            "FROM embeddings e JOIN images i ON i.id = e.image_id WHERE e.model_id = :m ORDER BY i.id"),
            {"m": model_id}).all()


def _index_def(engine, model_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                            {"n": hnsw.index_name(model_id)}).scalar()


def test_embed_stores_every_image_once_resumes_and_builds_the_index(cli, engine, small):
    _, _, images, model = small
    res = cli("embed", "--model", TINY_MODEL, "--batch", "16")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"model '{TINY_MODEL}' (dim 32), all images: {images} embedded now, 0 already stored, {images} in all"
    assert lines[-1].startswith(f"  HNSW index embeddings_hnsw_{model.id} built in ")
    assert "embedding (tiny)" in res.stderr and f"{images}/{images}" in res.stderr  # the progress bar
    rows = _stored(engine, model.id)
    assert len(rows) == images and {r.dims for r in rows} == {32}
    assert _index_def(engine, model.id) == (
        f"CREATE INDEX embeddings_hnsw_{model.id} ON public.embeddings USING hnsw "
        f"(((embedding)::halfvec(32)) halfvec_cosine_ops) WITH (m='16', ef_construction='64') "
        f"WHERE (model_id = {model.id})")

    res = cli("embed", "--model", TINY_MODEL)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        f"model '{TINY_MODEL}' (dim 32), all images: 0 embedded now, {images} already stored, {images} in all",
        f"  HNSW index embeddings_hnsw_{model.id} up to date"]

    with begin() as conn:  # an interrupted run: the last images have no embedding yet
        conn.execute(sa.text("DELETE FROM embeddings WHERE model_id = :m AND image_id IN "
                             "(SELECT id FROM images ORDER BY id DESC LIMIT 20)"), {"m": model.id})
    res = cli("embed", "--model", TINY_MODEL, "--split", "test")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"model '{TINY_MODEL}' (dim 32), split test: 20 embedded now, "
                                 f"{images - 20} already stored, {images} in all")
    assert len(_stored(engine, model.id)) == images


def test_stored_vectors_belong_to_their_images(engine, small):
    """The pipeline's batches, chunks and writer thread keep ids and vectors aligned."""
    from model_images import load_images
    from geoloc.model.registry import load_embedder
    from geoloc.retrieval.embed import embed_images

    _, _, images, model = small
    summary = embed_images(TINY_MODEL, batch=7, chunk=10)  # odd sizes: many partial batches and chunks
    assert summary.embedded == images and summary.index_built
    rows = _stored(engine, model.id)
    keras_model, _ = load_embedder(None, TINY_MODEL)
    pick = rows[::9]
    expected = keras_model.predict(load_images([Path(r.file) for r in pick], 64), verbose=0)
    got = np.array([r.embedding for r in pick])
    # stored as 16-bit floats: rounded by at most 2^-11 of each value (and of the norm)
    np.testing.assert_allclose(got, expected, rtol=2.0 ** -11, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5 + 2.0 ** -11)


def test_a_vector_of_the_wrong_dimension_is_refused_before_anything_is_written(engine, imported):
    model_id = _synthetic_model(256)
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM images ORDER BY id LIMIT 2")).scalars().all()
    with pytest.raises(DimensionMismatch) as err, begin() as conn:
        store_embeddings(conn, "synthetic-256", model_id, 256, ids, np.zeros((2, 128), np.float32))
    assert str(err.value) == "model 'synthetic-256' has dim 256, got 128"
    with pytest.raises(DimensionMismatch, match=r"^model 'synthetic-256' has dim 256, got 257$"), begin() as conn:
        store_embeddings(conn, "synthetic-256", model_id, 256, ids[:1], np.ones(257, np.float32))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM embeddings")).scalar() == 0


def test_embed_errors_are_one_line(cli, engine, small):
    res = cli("embed", "--model", "nope")
    assert res.exit_code == 1
    assert res.stderr == "Error: model 'nope' not found\nHint: see 'geoloc models list'\n"
    res = cli("embed", "--model", TINY_MODEL, "--chunk", "0")
    assert res.exit_code == 1
    assert res.stderr == "Error: --chunk 0: must be at least 1\n"


def test_a_bad_index_memory_setting_stops_embed_before_anything_is_stored(cli, engine, small, monkeypatch):
    monkeypatch.setenv("GEOLOC_INDEX_MEMORY", "lots")
    res = cli("embed", "--model", TINY_MODEL)
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: GEOLOC_INDEX_MEMORY: 'lots' is not a memory size such as 512MB or 4GB")
    assert len(res.stderr.splitlines()) <= 2  # the error, perhaps a hint
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM embeddings")).scalar() == 0


def test_large_models_are_indexed_as_halfvec_and_huge_ones_not_at_all(engine, imported):
    assert hnsw.vector_type(2000, "vector") == hnsw.VectorType("vector", 2000)
    assert hnsw.vector_type(2001) == hnsw.VectorType("halfvec", 2001)
    assert hnsw.vector_type(4001).indexable is False
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM images ORDER BY id LIMIT 50")).scalars().all()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(ids), 2500)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    model_id = _synthetic_model(2500)
    with begin() as conn:
        assert store_embeddings(conn, "synthetic-2500", model_id, 2500, ids, vectors) == len(ids)
    assert hnsw.build_index(engine, model_id, 2500) is True
    assert "((embedding)::halfvec(2500)) halfvec_cosine_ops" in _index_def(engine, model_id)
    assert hnsw.build_index(engine, model_id, 5000) is False
    assert _index_def(engine, model_id) is None


def test_thumbnail_baseline_vector(tmp_path, shared_data):
    path = next((shared_data / "images" / "Cropped_Test_v1_buffer_75").rglob("*.jpg"))
    v = thumbnail_vector(path)
    assert v.shape == (THUMBNAIL_DIM,) and v.dtype == np.float32
    assert abs(float(v.sum())) < 1e-4 and float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-6)
    flat = tmp_path / "flat.png"
    Image.new("RGB", (50, 40), (128, 128, 128)).save(flat)
    w = thumbnail_vector(flat)
    assert np.allclose(w, 1 / np.sqrt(THUMBNAIL_DIM)) and abs(float(w @ v)) < 1e-4


def _index_search(model_id: int, dim: int, query: np.ndarray, k: int = 3) -> tuple[list[int], str]:
    """(image ids, the scans of its plan) of the library's knn search with sequential scans and sorts
    off, so a few rows are read through the model's HNSW index as a large table's would be (the plan
    says which index served them)."""
    from geoloc.retrieval.search import EXPLAIN_PLAN, explain_lines, knn, set_search_options

    with begin() as conn:
        set_search_options(conn, 100)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_sort = off")
        lines = explain_lines(conn, model_id, dim, query, k, explain=EXPLAIN_PLAN)
        plan = "\n".join(ln.strip() for ln in lines if " Scan " in ln)
        ids = [n.image_id for n in knn(conn, model_id, dim, query, k)]
    return ids, plan


def test_a_halfvec_model_is_searched_through_its_halfvec_index(engine, imported):
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM images ORDER BY id LIMIT 40")).scalars().all()
    vectors = np.random.default_rng(1).normal(size=(len(ids), 2500)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    model_id = _synthetic_model(2500)
    with begin() as conn:
        store_embeddings(conn, "synthetic-2500", model_id, 2500, ids, vectors)
    assert hnsw.build_index(engine, model_id, 2500) is True
    for row in (0, 17, 39):  # a stored vector finds its own image first (distance 0)
        found, plan = _index_search(model_id, 2500, vectors[row])
        assert found[0] == ids[row], (row, found)
    assert f"Index Scan using {hnsw.index_name(model_id)}" in plan, plan


def test_rows_added_after_the_index_was_built_are_found_by_an_index_search(engine, imported):
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM images ORDER BY id LIMIT 60")).scalars().all()
    vectors = np.random.default_rng(2).normal(size=(len(ids), 48)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    model_id = _synthetic_model(48)
    with begin() as conn:
        store_embeddings(conn, "synthetic-48", model_id, 48, ids[:40], vectors[:40])
    assert hnsw.build_index(engine, model_id, 48) is True
    with begin() as conn:  # later rows: inserted into the live index, no rebuild
        store_embeddings(conn, "synthetic-48", model_id, 48, ids[40:], vectors[40:])
    for row in (40, 51, 59):
        found, plan = _index_search(model_id, 48, vectors[row])
        assert found[0] == ids[row], (row, found)
        # the brute-force neighbours over all 60 stored rows, computed here
        expected = [ids[i] for i in np.argsort(-(vectors @ vectors[row]), kind="stable")[:3]]
        assert found == expected, (row, found, expected)
    assert f"Index Scan using {hnsw.index_name(model_id)}" in plan, plan
