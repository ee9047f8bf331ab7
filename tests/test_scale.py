"""Search at scale: the region's size picks the plan of the one knn statement (GiST + exact ranking
for a small region, the HNSW iterative scan otherwise), halfvec indexes, the pgvector version
warning of `geoloc db status`, and reads served by a streaming replica."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa

from geoloc.db.engine import begin, get_engine
from geoloc.retrieval import index as hnsw
from geoloc.retrieval import search as S
from geoloc.retrieval.embed import store_embeddings

N = 20_000  # locations, one image and one embedding each
DIM = 16
BOX = (59.29, 17.97, 59.36, 18.13)  # lat_min, lng_min, lat_max, lng_max: central Stockholm
CENTRE = (59.325, 18.05)


def _points(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(BOX[0], BOX[2], n), rng.uniform(BOX[1], BOX[3], n)


def _vectors(n: int, seed: int = 2) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def load(url: str, n: int = N, kind: str | None = None,
         index: bool = True) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """N locations spread over Stockholm with one image and one embedding each (stored like `geoloc
    embed` stores them), analysed and indexed by build_index unless INDEX is false: (model id,
    vectors, lat, lng)."""
    lat, lng = _points(n)
    vectors = _vectors(n)
    engine = get_engine(url)
    with engine.begin() as conn:
        model_id = conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                                        "VALUES ('scale', 'test', :d, 0, 'ready') RETURNING id"), {"d": DIM}).scalar()
        conn.execute(sa.text(
            "INSERT INTO locations (id, geom, buffer_m, order_no, dist_to_origin_m, source) "
            "SELECT g, ST_SetSRID(ST_MakePoint(p.lng, p.lat), 4326), 0, g, 0, 'test' "
            "FROM unnest(CAST(:lat AS float8[]), CAST(:lng AS float8[])) WITH ORDINALITY AS p(lat, lng, g)"),
            {"lat": lat.tolist(), "lng": lng.tolist()})
        conn.execute(sa.text(
            "INSERT INTO images (id, location_id, heading, time_index, root, path, sha256, bytes, width, height, "
            "split, version) OVERRIDING SYSTEM VALUE "
            "SELECT g, g, 0, 0, '/scale', g || '.jpg', repeat('0', 64), 0, 0, 0, 'test', 'v1' "
            "FROM generate_series(1, :n) AS g"), {"n": n})
    with begin(url) as conn:
        store_embeddings(conn, "scale", model_id, DIM, np.arange(1, n + 1), vectors)
    if index:
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE locations; ANALYZE images; ANALYZE embeddings"))
        with engine.connect() as conn:
            hnsw.build_index(conn, model_id, DIM, kind=kind)
    return model_id, vectors, lat, lng


def _within(lat, lng, centre, metres) -> np.ndarray:
    from pyproj import Geod

    _, _, d = Geod(ellps="WGS84").inv(np.full(len(lat), centre[1]), np.full(len(lat), centre[0]), lng, lat)
    return d <= metres


def _exact(vectors, q, mask, k):
    sims = np.where(mask, vectors @ q, -np.inf)
    top = np.argsort(-sims)[:k]
    return [int(i) + 1 for i in top if np.isfinite(sims[i])]


@pytest.fixture(scope="module")
def scale_db(pg_cluster):
    """One database of N rows for the module (loading and indexing take a few seconds)."""
    name = "t_scale_plans"
    pg_cluster.create_database(name, template="geoloc_template")
    url = pg_cluster.url(name)
    model_id, vectors, lat, lng = load(url)
    yield url, model_id, vectors, lat, lng
    get_engine(url).dispose()
    pg_cluster.drop_database(name)


def _plan_lines(url, model_id, region, plan=None, k=10) -> list[str]:
    q = _vectors(1, seed=7)[0]
    with begin(url) as conn:
        S.set_search_options(conn)
        return S.explain_lines(conn, model_id, DIM, q, k, region, plan=plan)


def _cte(lines: list[str], name: str, following: str) -> str:
    """The EXPLAIN lines of knn.sql's CTE NAME, up to the CTE FOLLOWING it."""
    return "\n".join(lines[lines.index(f"  CTE {name}"):lines.index(f"  CTE {following}")])


def _ran(lines: list[str], needle: str) -> bool:
    return any(needle in ln and "never executed" not in ln for ln in lines)


def test_a_small_region_is_read_through_the_gist_index_and_ranked_exactly(scale_db):
    url, model_id, vectors, lat, lng = scale_db
    lines = _plan_lines(url, model_id, S.Region(*CENTRE, 250.0))
    assert _ran(lines, "ix_embeddings_model_geom"), "\n".join(lines)
    assert not _ran(lines, f"embeddings_hnsw_{model_id}"), "\n".join(lines)
    # the exact ranking: the same ids, in the same order, as brute force over the region
    q = _vectors(1, seed=7)[0]
    with begin(url) as conn:
        S.set_search_options(conn)
        found = S.knn(conn, model_id, DIM, q, 10, S.Region(*CENTRE, 250.0))
    truth = _exact(vectors, q, _within(lat, lng, CENTRE, 250.0), 10)
    assert 0 < len(truth) and [n.image_id for n in found] == truth


def test_a_large_region_walks_the_models_hnsw_index(scale_db):
    url, model_id, *_ = scale_db
    region = S.Region(*CENTRE, 3000.0)  # about 40 % of the points: far more than the threshold
    lines = _plan_lines(url, model_id, region)
    assert _ran(lines, f"Index Scan using embeddings_hnsw_{model_id}"), "\n".join(lines)
    # the region was sized by the statistics' estimate, without reading its rows
    size = _cte(lines, "region_size", "small")
    assert not _ran(size.splitlines(), "ix_embeddings_model_geom"), size
    with begin(url) as conn:
        S.set_search_options(conn)
        assert S.explain(conn, model_id, DIM, _vectors(1, seed=7)[0], 10, region) == "hnsw"
        # the same region ranked exactly when the threshold is raised above its size
        assert S.explain(conn, model_id, DIM, _vectors(1, seed=7)[0], 10, region,
                         plan=S.RegionPlan(N, N)) == "gist+exact"


def test_without_the_models_size_the_region_is_counted_up_to_the_threshold(scale_db):
    """A plain GiST scan that stops after threshold + 1 rows (a bitmap scan would collect all of the
    region's 8,000 rows first)."""
    url, model_id, *_ = scale_db
    lines = _plan_lines(url, model_id, S.Region(*CENTRE, 3000.0), plan=S.RegionPlan(500))
    size = _cte(lines, "region_size", "small")
    assert "Bitmap" not in size, size
    scan = next(ln for ln in size.splitlines() if "Index Scan using ix_embeddings_model_geom" in ln)
    assert "rows=501 " in scan, scan
    assert _ran(lines, f"Index Scan using embeddings_hnsw_{model_id}"), "\n".join(lines)


def test_without_statistics_the_box_share_is_null_and_search_counts(pg_cluster):
    """A table never analysed (40 rows written without geoloc's index build, which analyses: below
    autovacuum's threshold of 50) has no statistics for the estimate; the statement counts the box's
    rows instead and still ranks the region exactly."""
    name = "t_scale_no_stats"
    pg_cluster.create_database(name, template="geoloc_template")
    url = pg_cluster.url(name)
    try:
        model_id, vectors, lat, lng = load(url, n=40, index=False)
        box = "ST_MakeEnvelope(17.9, 59.2, 18.2, 59.4, 4326)"
        with get_engine(url).connect() as conn:
            assert conn.execute(sa.text(f"SELECT embeddings_box_share({box})")).scalar() is None  # not an error
        region, plan = S.Region(*CENTRE, 3000.0), S.RegionPlan(500, 40)
        lines = _plan_lines(url, model_id, region, plan)
        size = _cte(lines, "region_size", "small")
        assert _ran(size.splitlines(), " on embeddings e "), size  # the rows were read: counted
        q = _vectors(1, seed=7)[0]
        with begin(url) as conn:
            S.set_search_options(conn)
            found = [n.image_id for n in S.knn(conn, model_id, DIM, q, 5, region, plan=plan)]
        assert found == _exact(vectors, q, _within(lat, lng, CENTRE, 3000.0), 5)
    finally:
        get_engine(url).dispose()
        pg_cluster.drop_database(name)


def test_the_threshold_grows_with_the_square_root_of_the_models_size(scale_db):
    """Exact ranking costs a fixed time per row of the box, the graph walk about k / (the region's
    share of the rows) steps: they cross at a box size proportional to sqrt(rows)."""
    url, model_id, *_ = scale_db
    with begin(url) as conn:
        assert S.region_plan(conn, model_id) == S.RegionPlan(1556, N)  # 11 * sqrt(20,000) = 1555.6
    assert S.region_threshold(1_000_000) == 11_000 and S.region_threshold(100_000) == 3479
    assert S.region_threshold(1000) == 500  # never below 500 rows (11 * sqrt(1,000) = 348)
    # a model without a usable graph has every region ranked exactly: there is nothing to walk
    assert S.region_threshold(None) >= 2**31 - 2


def test_the_exact_plan_tests_the_circle_only_on_the_leading_rows(scale_db):
    """The box's rows are ranked by distance first; the true circle (a spheroid distance each) is
    checked in that order until k rows pass, not on all rows of the box."""
    url, model_id, vectors, lat, lng = scale_db
    region = S.Region(*CENTRE, 800.0)  # about 580 points in the circle, 740 in its box
    lines = _plan_lines(url, model_id, region, plan=S.RegionPlan(N, N))
    small = _cte(lines, "small", "large").splitlines()
    sort = next(ln for ln in small if "->  Sort (actual rows=" in ln)
    checked = int(sort.split("actual rows=")[1].split()[0])
    assert 10 <= checked < 30, "\n".join(small)
    q = _vectors(1, seed=7)[0]
    with begin(url) as conn:
        S.set_search_options(conn)
        found = [n.image_id for n in S.knn(conn, model_id, DIM, q, 10, region, plan=S.RegionPlan(N, N))]
    assert found == _exact(vectors, q, _within(lat, lng, CENTRE, 800.0), 10)


def test_a_regional_search_reads_the_models_index_from_the_catalog_once(scale_db):
    """The type the query casts to and the region's plan both come from one read of the index."""
    url, model_id, vectors, *_ = scale_db
    engine = get_engine(url)
    seen: list[str] = []

    def note(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        with begin(url) as conn:
            S.set_search_options(conn)
            found = S.knn(conn, model_id, DIM, vectors[0], 5, S.make_region(CENTRE, 2000))
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert len(found) == 5
    assert sum("pg_index" in st for st in seen) == 1


def test_search_transactions_never_compile_with_jit(scale_db):
    url, *_ = scale_db
    with begin(url) as conn:
        S.set_search_options(conn)
        assert conn.execute(sa.text("SHOW jit")).scalar() == "off"


def test_the_threshold_counts_the_models_embeddings_in_the_region(scale_db):
    """A 1 km region holds about 900 of the 20,000 points (about 1,150 in its bounding box): exact
    under a threshold of 2,000, the graph under a threshold of 500."""
    url, model_id, _, lat, lng = scale_db
    region = S.Region(*CENTRE, 1000.0)
    assert 700 < _within(lat, lng, CENTRE, 1000.0).sum() < 1100
    with begin(url) as conn:
        S.set_search_options(conn)
        q = _vectors(1, seed=7)[0]
        for rows in (N, None):  # estimated from the statistics, or counted
            assert S.explain(conn, model_id, DIM, q, 10, region, plan=S.RegionPlan(2000, rows)) == "gist+exact"
            assert S.explain(conn, model_id, DIM, q, 10, region, plan=S.RegionPlan(500, rows)) == "hnsw"


def test_an_area_is_sized_by_the_embeddings_in_its_bounding_box(scale_db):
    url, model_id, *_ = scale_db
    engine = get_engine(url)
    with engine.begin() as conn:
        for name, half in (("block", 0.001), ("city", 0.03)):
            conn.execute(sa.text(
                "INSERT INTO areas (name, geom, area_m2, source) VALUES (:n, ST_Multi(ST_Expand("
                "ST_SetSRID(ST_MakePoint(:lng, :lat), 4326), :h)), 0, 'test') ON CONFLICT (name) DO NOTHING"),
                {"n": name, "lat": CENTRE[0], "lng": CENTRE[1], "h": half})
    q = _vectors(1, seed=7)[0]
    with begin(url) as conn:
        S.set_search_options(conn)
        assert S.explain(conn, model_id, DIM, q, 10, S.Region(area="block")) == "gist+exact"
        assert S.explain(conn, model_id, DIM, q, 10, S.Region(area="city")) == "hnsw"


def test_without_a_region_the_exact_branch_is_not_even_planned(scale_db):
    url, model_id, *_ = scale_db
    lines = _plan_lines(url, model_id, S.Region())
    assert _ran(lines, f"Index Scan using embeddings_hnsw_{model_id}"), "\n".join(lines)
    assert not _ran(lines, "ix_embeddings_model_geom"), "\n".join(lines)  # region_size is not computed
    small = _cte(lines, "small", "large")
    assert "One-Time Filter: false" in small, small
    assert "Index Scan" not in small and "Seq Scan" not in small, small


# ------------------------------------------------------------------------------------- halfvec

def test_a_halfvec_index_is_used_by_search_and_finds_the_same_neighbours(scale_db, pg_cluster):
    url, model_id, vectors, *_ = scale_db
    q = _vectors(1, seed=9)[0]
    with begin(url) as conn:
        S.set_search_options(conn, ef_search=400)
        before = [n.image_id for n in S.knn(conn, model_id, DIM, q, 10)]
    with get_engine(url).connect() as conn:
        hnsw.build_index(conn, model_id, DIM, kind="halfvec")
    try:
        with begin(url) as conn:
            assert hnsw.indexed_type(conn, model_id, DIM) == hnsw.VectorType("halfvec", DIM)
            S.set_search_options(conn, ef_search=400)
            assert S.explain(conn, model_id, DIM, q, 10) == "hnsw"
            after = [n.image_id for n in S.knn(conn, model_id, DIM, q, 10)]
        assert after == before == _exact(vectors, q, np.ones(len(vectors), bool), 10)
    finally:
        with get_engine(url).connect() as conn:
            hnsw.build_index(conn, model_id, DIM, kind="vector")


# --------------------------------------------------------------------------- pgvector version

def test_a_build_gets_the_memory_its_graph_needs_and_says_when_it_had_too_little(scale_db, monkeypatch):
    """pgvector keeps the graph in maintenance_work_mem and goes on on disk, many times slower, once it
    is full: a build is given its graph's size (pgvector's notice is the judge), and a build capped
    below that by GEOLOC_INDEX_MEMORY says so."""
    url, model_id, *_ = scale_db
    engine = get_engine(url)
    out = hnsw.ensure_index(engine, model_id, DIM, rebuild=True)
    assert out.built and out.spilled is None
    # the graph's estimate, without the margin build_memory adds, is at most 5 % short and 25 % over
    graph_kb = hnsw.graph_bytes(N, hnsw.vector_type(DIM)) / 1024
    assert hnsw.ensure_index(engine, model_id, DIM, rebuild=True, memory=f"{round(graph_kb * 1.05)}kB").spilled is None
    assert hnsw.ensure_index(engine, model_id, DIM, rebuild=True, memory=f"{round(graph_kb * 0.8)}kB").spilled
    # 1 MB holds about a thousand elements of the 20,000
    monkeypatch.setenv("GEOLOC_INDEX_MEMORY", "1MB")
    out = hnsw.ensure_index(engine, model_id, DIM, rebuild=True)
    assert out.built and out.present
    assert out.spilled.startswith("the HNSW graph outgrew its 1024kB of build memory after ")
    assert "GEOLOC_INDEX_MEMORY" in out.spilled
    monkeypatch.delenv("GEOLOC_INDEX_MEMORY")
    assert hnsw.ensure_index(engine, model_id, DIM, rebuild=True).spilled is None


def test_a_million_halfvec_rows_get_more_than_the_gigabyte_that_held_831k(monkeypatch):
    """Measured with pgvector 0.8.0: 1 GiB of maintenance_work_mem held 830,988 halfvec(256) elements at
    m = 16, so a million need at least 1,048,576 kB x 1,000,000 / 830,988 = 1,261,851 kB."""
    monkeypatch.delenv("GEOLOC_INDEX_MEMORY", raising=False)
    kb = int(hnsw.build_memory(1_000_000, hnsw.vector_type(256, "halfvec")).removesuffix("kB"))
    assert 1_261_851 <= kb <= 2 * 1_261_851
    # never more than GEOLOC_INDEX_MEMORY (4 GB unless set), never less than 64 MB
    assert hnsw.build_memory(10_000_000, hnsw.vector_type(256, "halfvec")) == "4194304kB"
    assert hnsw.build_memory(10, hnsw.vector_type(256, "halfvec")) == "65536kB"
    monkeypatch.setenv("GEOLOC_INDEX_MEMORY", "16GB")
    assert hnsw.build_memory(10_000_000, hnsw.vector_type(256, "halfvec")) != "4194304kB"


@pytest.mark.parametrize("value", ["lots", "0GB", "4 G", "-1MB", "1.5GB"])
def test_an_unusable_index_memory_is_named_in_one_line(monkeypatch, value):
    from geoloc.config import index_memory_kb
    from geoloc.errors import ConfigError

    monkeypatch.setenv("GEOLOC_INDEX_MEMORY", value)
    with pytest.raises(ConfigError, match=r"^GEOLOC_INDEX_MEMORY: '.*' is not a memory size such as 512MB or 4GB"):
        index_memory_kb()


def test_db_status_warns_about_pgvector_older_than_0_8_4(cli, db_url):
    res = cli("db", "status", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["pgvector"] == "0.8.0"  # the server installed here
    [warning] = info["warnings"]
    assert warning.startswith("pgvector 0.8.0 is older than 0.8.4")
    for fact in ("parallel index builds can overflow (fixed in 0.8.2", "single-process",
                 "VACUUM after deletes can corrupt an HNSW index (fixed in 0.8.3/0.8.4", "rebuilds"):
        assert fact in warning, warning
    text = cli("db", "status")
    assert text.exit_code == 0 and f"Warning: {warning}" in text.stdout.splitlines()


def test_a_fixed_pgvector_gets_no_warning():
    from geoloc.db.admin import warnings_for

    assert warnings_for("0.8.4") == [] and warnings_for("0.9.1") == []
    assert len(warnings_for("0.8.3")) == 1 and len(warnings_for("0.7.4")) == 1


# --------------------------------------------------------------------------------- replica

@pytest.mark.slow
def test_a_streaming_replica_answers_searches_like_the_primary_and_refuses_writes(pg_cluster, db_url):
    import os
    import shutil
    import socket
    import tempfile
    from pathlib import Path

    import psycopg

    from geoloc import config
    from geoloc.db.cluster import Cluster
    from geoloc.db.replica import create_replica, wait_for_replay

    model_id, *_ = load(db_url, n=3000)
    root = Path(tempfile.mkdtemp(prefix="geoloc-test-replica-"))
    os.chmod(root, 0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dbname = db_url.rsplit("/", 1)[1]
    standby = Cluster(root / "pg", port)
    try:
        rep = create_replica(pg_cluster, standby.root, port)
        assert rep.created and (rep.cluster.pgdata / "standby.signal").exists()
        assert config.REPLICATION_USER in config.read_secrets(pg_cluster.root)
        hba = (pg_cluster.pgdata / "pg_hba.conf").read_text()
        assert not [ln for ln in hba.splitlines() if ln.strip() and not ln.startswith("#") and "trust" in ln]
        q = _vectors(1, seed=11)[0]
        answers = []
        for url in (db_url, rep.url(dbname)):
            with begin(url) as conn:
                S.set_search_options(conn)
                answers.append([(n.image_id, n.location_id) for n in
                                S.knn(conn, model_id, DIM, q, 10, S.Region(*CENTRE, 2000.0))])
        assert len(answers[0]) == 10 and answers[1] == answers[0]
        # a row written on the primary later reaches the replica
        with get_engine(db_url).begin() as conn:
            conn.execute(sa.text("DELETE FROM embeddings WHERE image_id = :i"), {"i": answers[0][0][0]})
        wait_for_replay(pg_cluster, rep.cluster)
        with get_engine(rep.url(dbname)).connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM embeddings")).scalar() == 2999
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with psycopg.connect(config.libpq_url(rep.url(dbname)), autocommit=True) as conn:
                conn.execute("DELETE FROM embeddings")
    finally:
        if standby.initialised:
            get_engine(standby.url(dbname)).dispose()
            standby.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_read_url_that_is_not_postgresql_is_refused_naming_the_option(tmp_path):
    from geoloc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^--read-url: 'mysql://u@h/db' is not a PostgreSQL URL"):
        S.search([tmp_path / "x.jpg"], "m", read_url="mysql://u@h/db")
