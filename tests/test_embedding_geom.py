"""Each embedding row carries its image's location (embeddings.geom), which the region-limited search
reads: the copy is set on every insert whatever the statement wrote, follows a moved location or a
re-assigned image, and is filled in when an existing database is migrated (its HNSW index kept)."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from geoloc.db.engine import begin, get_engine
from geoloc.db.migrate import downgrade, migrate
from geoloc.retrieval import index as hnsw
from geoloc.retrieval import search as S
from geoloc.retrieval.embed import store_embeddings

DIM = 8
# (lat, lng) of the three locations: two in the old town, one on Kungsholmen (about 2 km west)
PLACES = {1: (59.3251, 18.0711), 2: (59.3240, 18.0700), 3: (59.3300, 18.0300)}


def _point(conn, location_id: int) -> tuple[float, float]:
    row = conn.execute(sa.text("SELECT ST_Y(geom) AS lat, ST_X(geom) AS lng FROM locations WHERE id = :i"),
                       {"i": location_id}).one()
    return row.lat, row.lng


def _embedding_points(conn, model_id: int) -> dict[int, tuple[float, float]]:
    rows = conn.execute(sa.text("SELECT image_id, ST_Y(geom) AS lat, ST_X(geom) AS lng FROM embeddings "
                                "WHERE model_id = :m ORDER BY image_id"), {"m": model_id})
    return {r.image_id: (r.lat, r.lng) for r in rows}


def _vectors(n: int) -> np.ndarray:
    x = np.random.default_rng(3).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def small_db(pg_cluster):
    """Three locations, one image each (image id = location id), a model with their embeddings."""
    name = "t_embedding_geom"
    pg_cluster.create_database(name, template="geoloc_template")
    url = pg_cluster.url(name)
    with get_engine(url).begin() as conn:
        for lid, (lat, lng) in PLACES.items():
            conn.execute(sa.text(
                "INSERT INTO locations (id, geom, buffer_m, order_no, dist_to_origin_m, source) "
                "VALUES (:i, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326), 0, :i, 0, 'test')"),
                {"i": lid, "lat": lat, "lng": lng})
            conn.execute(sa.text(
                "INSERT INTO images (id, location_id, heading, time_index, root, path, sha256, bytes, width, "
                "height, split, version) OVERRIDING SYSTEM VALUE "
                "VALUES (:i, :i, 0, 0, '/t', :i || '.jpg', repeat('0', 64), 0, 0, 0, 'test', 'v1')"), {"i": lid})
        model_id = conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                                        "VALUES ('geom', 'test', :d, 0, 'ready') RETURNING id"), {"d": DIM}).scalar()
    with begin(url) as conn:
        store_embeddings(conn, "geom", model_id, DIM, np.array(sorted(PLACES)), _vectors(len(PLACES)))
    yield url, model_id
    get_engine(url).dispose()
    pg_cluster.drop_database(name)


def test_every_stored_embedding_carries_its_images_location(small_db):
    url, model_id = small_db
    with get_engine(url).begin() as conn:
        assert _embedding_points(conn, model_id) == {i: _point(conn, i) for i in PLACES}
        # a statement that writes its own (wrong) point is overruled by the image's location
        other = conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                                     "VALUES ('other', 'test', 2, 0, 'ready') RETURNING id")).scalar()
        conn.execute(sa.text("INSERT INTO embeddings (model_id, image_id, embedding, geom) "
                             "VALUES (:m, 3, '[1,0]', ST_SetSRID(ST_MakePoint(0, 0), 4326))"), {"m": other})
        assert _embedding_points(conn, other) == {3: PLACES[3]}


def test_moving_a_location_moves_its_embeddings_and_the_search_follows(small_db):
    url, model_id = small_db
    query = _vectors(len(PLACES))[2]  # image 3's own embedding
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("UPDATE locations SET geom = ST_SetSRID(ST_MakePoint(18.0705, 59.3245), 4326) "
                             "WHERE id = 3"))
        assert _embedding_points(conn, model_id)[3] == (59.3245, 18.0705)
    with begin(url) as conn:
        S.set_search_options(conn)
        near_old_town = S.knn(conn, model_id, DIM, query, 3, S.Region(59.3251, 18.0711, 300.0))
        near_kungsholmen = S.knn(conn, model_id, DIM, query, 3, S.Region(*PLACES[3], 300.0))
    assert [n.image_id for n in near_old_town][0] == 3
    assert {n.image_id for n in near_old_town} == {1, 2, 3}
    assert near_kungsholmen == []


def test_re_assigning_an_image_to_another_location_moves_its_embedding(small_db):
    url, model_id = small_db
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("UPDATE images SET location_id = 3 WHERE id = 1"))
        assert _embedding_points(conn, model_id)[1] == PLACES[3]


def _index_definition(conn, model_id: int) -> tuple[str, bool]:
    row = conn.execute(sa.text(
        "SELECT pg_get_indexdef(x.indexrelid) AS definition, x.indisvalid AS valid FROM pg_index AS x "
        "JOIN pg_class AS c ON c.oid = x.indexrelid WHERE c.relname = :n"), {"n": f"embeddings_hnsw_{model_id}"}).one()
    return row.definition, row.valid


def test_migrating_a_database_with_embeddings_fills_the_points_and_keeps_the_hnsw_index(small_db):
    url, model_id = small_db
    with get_engine(url).connect() as conn:
        hnsw.build_index(conn, model_id, DIM)
    with get_engine(url).begin() as conn:
        definition, _ = _index_definition(conn, model_id)
    downgrade(url, "0013")
    with get_engine(url).begin() as conn:
        assert "geom" not in {c["name"] for c in sa.inspect(conn).get_columns("embeddings")}
    migrate(url)
    with get_engine(url).begin() as conn:
        assert _embedding_points(conn, model_id) == {i: _point(conn, i) for i in PLACES}
        assert _index_definition(conn, model_id) == (definition, True)
    query = _vectors(len(PLACES))[1]
    with begin(url) as conn:
        S.set_search_options(conn)
        found = S.knn(conn, model_id, DIM, query, 3, S.Region(59.3251, 18.0711, 300.0))
    assert [n.image_id for n in found] == [2, 1]  # image 2's own embedding first; 3 is outside
