"""Embeddings stored as halfvec (migration 0013): the column's type, what a stored vector reads back as
(numpy's float16 rounding of what was written), the bytes per row, a migration round trip that keeps
the rows and each model's HNSW index in use, and the refusals of values halfvec cannot hold."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from geoloc.db.engine import begin, get_engine
from geoloc.db.migrate import alembic_config, current_revision, downgrade, head_revision, migrate
from geoloc.errors import InputError
from geoloc.retrieval import index as hnsw
from geoloc.retrieval import search as S
from geoloc.retrieval.embed import store_embeddings
from geoloc.retrieval.evaluate import split_embeddings

DIM = 256
N = 300  # locations, one image and one embedding per model each


def _before() -> str:
    """The revision before halfvec storage."""
    scripts = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://unused/x"))
    return scripts.get_revision("0013").down_revision


def _unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _fp16(x) -> np.ndarray:
    """What a 16-bit float store of X reads back as, computed by numpy."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def _images(url: str, n: int = N) -> None:
    """N locations in Stockholm with one test-split image each (image id = location id = 1..N)."""
    with get_engine(url).begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO locations (id, geom, buffer_m, order_no, dist_to_origin_m, source) "
            "SELECT g, ST_SetSRID(ST_MakePoint(18.0 + g * 1e-4, 59.3), 4326), 0, g, 0, 'test' "
            "FROM generate_series(1, :n) AS g"), {"n": n})
        conn.execute(sa.text(
            "INSERT INTO images (id, location_id, heading, time_index, root, path, sha256, bytes, width, height, "
            "split, version) OVERRIDING SYSTEM VALUE "
            "SELECT g, g, 0, 0, '/halfvec', g || '.jpg', repeat('0', 64), 0, 0, 0, 'test', 'v1' "
            "FROM generate_series(1, :n) AS g"), {"n": n})


def _model(url: str, name: str) -> int:
    with get_engine(url).begin() as conn:
        return conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                                    "VALUES (:n, 'test', :d, 0, 'ready') RETURNING id"), {"n": name, "d": DIM}).scalar()


def _column_type(url: str) -> str:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.text(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'")).scalar_one()


def _stored(url: str, model_id: int) -> np.ndarray:
    """The model's stored vectors by image id, as the server widens them to float4."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text("SELECT CAST(embedding AS real[]) FROM embeddings WHERE model_id = :m "
                                    "ORDER BY image_id"), {"m": model_id}).scalars().all()
    return np.array(rows, np.float32)


def test_a_stored_embedding_is_16_bit_floats_in_520_bytes(db_url):
    _images(db_url, 3)
    model_id = _model(db_url, "half")
    vectors = _unit(3, seed=1)
    with begin(db_url) as conn:
        assert store_embeddings(conn, "half", model_id, DIM, [1, 2, 3], vectors) == 3
    assert _column_type(db_url) == "halfvec"
    stored = _stored(db_url, model_id)
    np.testing.assert_array_equal(stored, _fp16(vectors))
    assert not np.array_equal(stored, vectors)  # really rounded, not float32 ...
    assert np.all(np.abs(stored - vectors) <= np.abs(vectors) * 2.0 ** -11 + 2.0 ** -25)  # ... by half an ulp at most
    with begin(db_url) as conn:  # what evaluation and whitening read: the same values, as floats
        np.testing.assert_array_equal(split_embeddings(conn, model_id, DIM, "test")[0], _fp16(vectors))
        sizes = conn.execute(sa.text("SELECT pg_column_size(embedding) FROM embeddings WHERE model_id = :m"),
                             {"m": model_id}).scalars().all()
        as_vector = conn.execute(sa.text("SELECT pg_column_size(CAST(embedding AS vector)) FROM embeddings "
                                         "WHERE model_id = :m LIMIT 1"), {"m": model_id}).scalar_one()
    assert sizes == [8 + 2 * DIM] * 3  # 520 bytes: header, then 2 bytes a value
    assert as_vector == 8 + 4 * DIM  # 1,032 as float32 vector


def test_embed_refuses_a_value_halfvec_cannot_hold_and_stores_nothing(db_url):
    _images(db_url, 2)
    model_id = _model(db_url, "loud")
    vectors = _unit(2, seed=2)
    vectors[1, 5] = 70000.0
    with begin(db_url) as conn, pytest.raises(InputError, match=r"model 'loud' .*beyond ±65504"):
        store_embeddings(conn, "loud", model_id, DIM, [1, 2], vectors)
    assert len(_stored(db_url, model_id)) == 0


def _indexed_model(url: str, name: str, seed: int, kind: str) -> tuple[int, np.ndarray]:
    model_id = _model(url, name)
    vectors = _unit(N, seed)
    with begin(url) as conn:
        store_embeddings(conn, name, model_id, DIM, np.arange(1, N + 1), vectors)
    with get_engine(url).connect() as conn:
        hnsw.build_index(conn, model_id, DIM, kind=kind)
    return model_id, vectors


def _index(url: str, model_id: int) -> tuple:
    """(valid, recorded rows), the type the index casts to, the plan knn runs, and the nearest image
    to image 7's stored vector."""
    q = _stored(url, model_id)[6]
    with begin(url) as conn:
        S.set_search_options(conn)
        # 600 rows: reading them and sorting is rightly cheaper than the graph, so make it dearer
        conn.execute(sa.text("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off"))
        return (_state(conn, model_id), hnsw.indexed_type(conn, model_id, DIM),
                S.explain(conn, model_id, DIM, q, 3), S.knn(conn, model_id, DIM, q, 3)[0].image_id)


def _state(conn, model_id: int) -> tuple[bool, int | None]:
    index = hnsw.read_index(conn, model_id)
    return index.valid, index.rows


def test_a_downgrade_and_upgrade_keep_the_rows_and_each_models_hnsw_index_in_use(db_url):
    _images(db_url)
    half_id, half_vectors = _indexed_model(db_url, "half-index", seed=3, kind="halfvec")
    vec_id, vec_vectors = _indexed_model(db_url, "vector-index", seed=4, kind="vector")
    expected = {half_id: (((True, N), hnsw.VectorType("halfvec", DIM), "hnsw", 7), _fp16(half_vectors)),
                vec_id: (((True, N), hnsw.VectorType("vector", DIM), "hnsw", 7), _fp16(vec_vectors))}
    for model_id, (index, values) in expected.items():
        assert _index(db_url, model_id) == index
        np.testing.assert_array_equal(_stored(db_url, model_id), values)

    downgrade(db_url, _before())
    assert _column_type(db_url) == "vector"
    for model_id, (index, values) in expected.items():
        # the index as the older schema had it (today's search statement needs the later columns)
        with get_engine(db_url).connect() as conn:
            assert (_state(conn, model_id), hnsw.indexed_type(conn, model_id, DIM)) == index[:2]
        np.testing.assert_array_equal(_stored(db_url, model_id), values)  # widened exactly

    assert migrate(db_url) == head_revision()
    assert _column_type(db_url) == "halfvec"
    for model_id, (index, values) in expected.items():
        assert _index(db_url, model_id) == index  # rebuilt by the ALTER, its row count comment kept
        np.testing.assert_array_equal(_stored(db_url, model_id), values)


def test_a_value_beyond_halfvec_stops_the_migration_with_one_line_and_changes_nothing(cli, db_url):
    _images(db_url, 3)
    model_id = _model(db_url, "loud")
    downgrade(db_url, _before())
    vectors = [[0.5] * DIM, [0.25] * DIM, [0.5] * DIM]
    vectors[2][9] = 70000.0
    with get_engine(db_url).begin() as conn:
        for image_id, v in enumerate(vectors, start=1):
            conn.execute(sa.text("INSERT INTO embeddings (model_id, image_id, embedding) "
                                 "VALUES (:m, :i, CAST(CAST(:v AS real[]) AS vector))"),
                         {"m": model_id, "i": image_id, "v": v})
    res = cli("db", "migrate")
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    assert lines[0] == (f"Error: cannot store embeddings as halfvec: 1 embedding of model {model_id} holds values "
                        "beyond its range (±65504); nothing was changed"), res.output
    assert [ln for ln in lines[1:] if not ln.startswith("Hint: ")] == []
    assert current_revision(db_url) == _before()
    assert _column_type(db_url) == "vector"
    np.testing.assert_array_equal(_stored(db_url, model_id), np.array(vectors, np.float32))
