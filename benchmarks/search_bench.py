"""Search latency and recall@k: the SQL query with HNSW, the same SQL without index, FAISS HNSW and
scikit-learn's KDTree (what the original project used), side by side on the same data in one run.

    nice -n 5 .venv/bin/python benchmarks/search_bench.py --model mnv3-small           # real + 100k synthetic
    nice -n 5 .venv/bin/python benchmarks/search_bench.py --n 1000000 --kdtree-queries 20
    .venv/bin/python benchmarks/search_bench.py --model mnv3-small --n 0                 # real data only

Datasets:
  real       the embeddings a registered model (--model, repeatable) has in the configured database
             (GEOLOC_DATABASE_URL or the embedded cluster), each at its image's location; queries
             are embeddings of random images, searched for k+1 with the query image itself dropped.
  synthetic  --n vectors of --dim with a low intrinsic dimension (clusters in a 32-d space mapped
             linearly to --dim, plus small noise, L2-normalised), each with a random point in the
             Stockholm bounding box; queries are fresh draws from the same distribution.
Every dataset is copied into a database of its own on the same server (--bench-db prefix, e.g.
geoloc_bench_synthetic_1000000_256_s0), one image and location row per vector, and indexed there
with geoloc's own build_index. It is kept: a later run with the same data skips load and build.
Filters: none, and "near": only points within --radius metres of a point (real data: the query's
own location; synthetic: a random point), i.e. `geoloc search --near --within` (iterative scans).

Methods (recall@k against exact brute force in numpy, float32):
  SQL+HNSW    geoloc/sql/search/knn.sql as `geoloc search` runs it (hnsw.iterative_scan = relaxed_order,
              hnsw.ef_search = --ef-search), one execute + fetch per query over loopback TCP
  SQL exact   the same statement in a transaction that dropped the HNSW index first (rolled back:
              the index stays; harmless in the benchmark's own database)
  FAISS HNSW  IndexHNSWFlat (M=16, efConstruction=64, efSearch=--ef-search, inner product), one
              thread per query; the filter is an IDSelectorBatch of the ids inside the region
              (computed in numpy per query and included in the latency)
  KDTree      sklearn.neighbors.KDTree (leaf_size 40, Euclidean = cosine order on unit vectors); the
              filter re-queries with 8k, 16k, ... neighbours until k lie inside the region
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geoloc import config  # noqa: E402
from geoloc.db.engine import begin  # noqa: E402
from geoloc.retrieval import index as hnsw  # noqa: E402
from geoloc.retrieval.search import (EXPLAIN_PLAN, Region, explain_lines, knn_params, knn_statement,  # noqa: E402
                                     search_setup, set_search_options)
from geoloc.retrieval.vectors import bind_vectors, vector_cursor  # noqa: E402
from geoloc.retrieval.embed import store_embeddings  # noqa: E402

BBOX = (59.290, 17.970, 59.360, 18.130)  # lat_min, lng_min, lat_max, lng_max: central Stockholm


@dataclass
class Dataset:
    name: str
    url: str
    model_id: int
    ids: np.ndarray  # image ids, row order of vectors
    vectors: np.ndarray  # float32 (n, dim), unit rows
    lat: np.ndarray
    lng: np.ndarray
    queries: np.ndarray  # float32 (q, dim)
    exclude: list[int | None]  # per query: an image id to drop from its results (the query itself)
    centres: list[tuple[float, float]]  # per query: centre of the "near" region
    build: dict[str, float] = field(default_factory=dict)  # method -> build seconds

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]


@dataclass
class Result:
    dataset: str
    n: int
    dim: int
    filter: str
    method: str
    build_s: float | None
    latencies: list[float]
    recall: float
    queries: int
    note: str = ""


# ------------------------------------------------------------------------------------------- data

class LowRankClusters:
    """Unit vectors with a low intrinsic dimension, like real embeddings (not isotropic noise)."""

    def __init__(self, dim: int, intrinsic: int = 32, clusters: int = 2000, spread: float = 0.35,
                 noise: float = 0.02, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.centres = rng.normal(size=(clusters, intrinsic))
        self.mix = rng.normal(size=(intrinsic, dim)) / np.sqrt(intrinsic)
        self.spread, self.noise = spread, noise

    def sample(self, n: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
        out = np.empty((n, self.mix.shape[1]), np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            z = self.centres[rng.integers(len(self.centres), size=m)]
            z = z + self.spread * rng.normal(size=z.shape)
            x = z @ self.mix + self.noise * rng.normal(size=(m, self.mix.shape[1]))
            out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def random_points(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lat0, lng0, lat1, lng1 = BBOX
    return rng.uniform(lat0, lat1, n), rng.uniform(lng0, lng1, n)


def geodesic_within(lat: np.ndarray, lng: np.ndarray, centre: tuple[float, float], metres: float) -> np.ndarray:
    """Boolean mask of the points within METRES of CENTRE on the WGS84 spheroid (as PostGIS geography)."""
    from pyproj import Geod

    clat, clng = centre
    box = (np.abs(lat - clat) <= metres / 110_000) & (np.abs(lng - clng) <= metres / (111_000 * np.cos(np.radians(clat))))
    idx = np.nonzero(box)[0]
    mask = np.zeros(len(lat), bool)
    if len(idx):
        _, _, dist = Geod(ellps="WGS84").inv(np.full(len(idx), clng), np.full(len(idx), clat), lng[idx], lat[idx])
        mask[idx[dist <= metres]] = True
    return mask


def real_dataset(model: str, n_queries: int, seed: int, bench_db: str, memory: str | None) -> Dataset:
    """A model's embeddings (and their images' locations) from the configured database, copied into a
    benchmark database of their own, so timing the index-less query never locks the real table."""
    from geoloc.db.models import get_model

    with begin() as conn:
        row = get_model(conn, model)
        with vector_cursor(conn) as cur:
            cur.execute("SELECT e.embedding::vector, ST_Y(l.geom), ST_X(l.geom) FROM embeddings e "
                        "JOIN images i ON i.id = e.image_id JOIN locations l ON l.id = i.location_id "
                        "WHERE e.model_id = %s ORDER BY e.image_id", (row.id,))
            rows = cur.fetchall()
    if not rows:
        raise SystemExit(f"model '{model}' has no embeddings: run 'geoloc embed --model {model}' first")
    vectors = np.stack([r[0].to_numpy() for r in rows]).astype(np.float32)
    lat, lng = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n_queries, len(rows)), replace=False)
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")
    url, model_id, build = ensure_loaded(f"{bench_db}_real_{slug}", f"real-{model}", vectors, lat, lng, memory)
    ids = np.arange(1, len(rows) + 1, dtype=np.int64)
    return Dataset(f"real:{model}", url, model_id, ids, vectors, lat, lng, vectors[pick],
                   [int(ids[i]) for i in pick], [(float(lat[i]), float(lng[i])) for i in pick], build)


def synthetic_dataset(n: int, dim: int, n_queries: int, seed: int, bench_db: str,
                      memory: str | None) -> Dataset:
    """Deterministic synthetic vectors with random points in the Stockholm box."""
    gen = LowRankClusters(dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    t = time.perf_counter()
    vectors = gen.sample(n, rng)
    lat, lng = random_points(n, rng)
    queries = gen.sample(n_queries, np.random.default_rng(seed + 2))
    centres = list(zip(*random_points(n_queries, np.random.default_rng(seed + 3))))
    print(f"generated {n:,} x {dim} synthetic vectors in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    url, model_id, build = ensure_loaded(f"{bench_db}_synthetic_{n}_{dim}_s{seed}", f"synthetic-{n}-{dim}-s{seed}",
                                         vectors, lat, lng, memory)
    label = f"synthetic:{n // 1000}k" if n >= 1000 else f"synthetic:{n}"
    return Dataset(label, url, model_id, np.arange(1, n + 1, dtype=np.int64), vectors, lat, lng, queries,
                   [None] * n_queries, [(float(a), float(b)) for a, b in centres], build)


def bench_url(name: str) -> str:
    """The URL of database NAME on the configured server, created and migrated if missing.

    On the embedded cluster the admin role creates it for the app role (which may not create
    databases); on an external server the configured role must be allowed to."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    from geoloc.db.cluster import Cluster
    from geoloc.db.migrate import migrate

    target = config.database_target()
    if not target.external:
        cluster = Cluster.default()
        cluster.provision(name)
        url = cluster.url(name)
    else:
        base = make_url(target.url)
        url = base.set(database=name).render_as_string(hide_password=False)
        admin = config.libpq_url(base.set(database="postgres").render_as_string(hide_password=False))
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(url)
    return url


def copy_places(cur, lat, lng) -> None:
    """One location per (lat, lng) and one image at each (ids 1..n), COPYed in the cursor's transaction."""
    n = len(lat)
    with cur.copy("COPY locations (id, geom, buffer_m, order_no, dist_to_origin_m, source) FROM STDIN") as cp:
        for i in range(n):
            cp.write_row((i + 1, f"SRID=4326;POINT({lng[i]:.9f} {lat[i]:.9f})", 0.0, i + 1, 0.0, "benchmark"))
    with cur.copy("COPY images (id, location_id, heading, time_index, root, path, sha256, bytes, width, "
                  "height, split, version) FROM STDIN") as cp:
        for i in range(n):
            cp.write_row((i + 1, i + 1, 0, 0, "/benchmark", f"{i + 1}.jpg", "0" * 64, 0, 0, 0, "test", "v1"))


def ensure_loaded(db: str, name: str, vectors, lat, lng,
                  memory: str | None) -> tuple[str, int, dict[str, float]]:
    """(url, model id, build seconds): DB holds exactly these vectors under model NAME, HNSW-indexed.

    A database loaded by an earlier run with the same data (fingerprint) is reused as it is, so a
    second run at 1M skips the long single-process HNSW build (its time is remembered)."""
    import sqlalchemy as sa

    fingerprint = hashlib.sha1(np.ascontiguousarray(vectors).tobytes() + np.asarray([lat, lng]).tobytes()).hexdigest()
    url = bench_url(db)
    with begin(url) as conn:
        row = conn.execute(sa.text("SELECT id, hyperparams FROM models WHERE name = :n"), {"n": name}).first()
        if row is not None and row.hyperparams.get("fingerprint") == fingerprint and hnsw.index_exists(conn, row.id):
            print(f"reusing {name} in database {db} (loaded and indexed by an earlier run)", file=sys.stderr)
            return url, row.id, {"SQL+HNSW": row.hyperparams["build_s"]}
    n, dim = vectors.shape
    with begin(url) as conn:
        conn.execute(sa.text("TRUNCATE eval_predictions, eval_runs, embeddings, images, locations, models CASCADE"))
        model_id = conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                                        "VALUES (:n, 'benchmark', :d, 0, 'training') RETURNING id"),
                                {"n": name, "d": dim}).scalar()
    t = time.perf_counter()
    with begin(url) as conn:
        with vector_cursor(conn) as cur:
            copy_places(cur, lat, lng)
            cur.execute("SELECT setval(pg_get_serial_sequence('images', 'id'), %s)", (n,))
        store_embeddings(conn, name, model_id, dim, range(1, n + 1), vectors)  # as `geoloc embed` stores them
    load_s = time.perf_counter() - t
    with begin(url) as conn:
        conn.execute(sa.text("ANALYZE locations; ANALYZE images; ANALYZE embeddings"))
    print(f"{db}: loaded {n:,} rows in {load_s:.1f} s; building the HNSW index (single process) ...", file=sys.stderr)
    t = time.perf_counter()
    with begin(url) as conn:
        hnsw.build_index(conn, model_id, dim, memory=memory)
    build_s = time.perf_counter() - t
    with begin(url) as conn:
        # hyperparams and status together: a ready model is frozen (migration 0006)
        conn.execute(sa.text("UPDATE models SET hyperparams = CAST(:h AS jsonb), status = 'ready' WHERE id = :i"),
                     {"h": json.dumps({"fingerprint": fingerprint, "build_s": build_s}), "i": model_id})
    print(f"{db}: HNSW index built in {build_s:.1f} s", file=sys.stderr)
    return url, model_id, {"SQL+HNSW": build_s}


# ------------------------------------------------------------------------------------ ground truth

def exact(ds: Dataset, k: int, masks: list[np.ndarray | None]) -> list[np.ndarray]:
    truth = []
    for qi, q in enumerate(ds.queries):
        sims = ds.vectors @ q
        if ds.exclude[qi] is not None:
            sims[ds.ids == ds.exclude[qi]] = -np.inf
        if masks[qi] is not None:
            sims[~masks[qi]] = -np.inf
        top = np.argpartition(-sims, min(k, len(sims) - 1))[:k]
        top = top[np.isfinite(sims[top])]
        truth.append(ds.ids[top[np.argsort(-sims[top])]])
    return truth


def recall(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    scores = [len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth) if len(t)]
    return float(np.mean(scores)) if scores else float("nan")


def _drop(ids: list[int], exclude: int | None, k: int) -> np.ndarray:
    return np.array([i for i in ids if i != exclude][:k], np.int64)


# ------------------------------------------------------------------------------------------ methods

def run_sql(ds: Dataset, k: int, regions: list[Region], ef_search: int, no_index: bool,
            count: int) -> tuple[list[np.ndarray], list[float], str]:
    """Execute knn.sql per query as geoloc.retrieval.search.knn does (NO_INDEX: after dropping the
    HNSW index, i.e. exact search)."""
    import sqlalchemy as sa

    from geoloc.db import sqlfiles
    from geoloc.db.engine import get_engine

    found, lat = [], []
    with get_engine(ds.url).connect() as conn:  # rolled back at the end: nothing is changed
        set_search_options(conn, ef_search)
        if no_index:
            # in this transaction only (rolled back below), so not index_drop.sql's CONCURRENTLY
            conn.execute(sa.text(sqlfiles.fill("DROP INDEX {name}", name=hnsw.index_name(ds.model_id))))
        bind_vectors(conn)
        vtype, region_plan = search_setup(conn, ds.model_id, ds.dim, regions[0])
        stmt = knn_statement(ds.dim, vtype)
        plan = _plan(conn, ds, k, regions[0], vtype, region_plan)
        for qi in range(count):
            params = knn_params(ds.model_id, ds.queries[qi], k + 1, regions[qi], None, None, region_plan)
            if qi == 0:
                conn.execute(stmt, params).all()  # warm-up
            t = time.perf_counter()
            rows = conn.execute(stmt, params).all()
            lat.append(time.perf_counter() - t)
            found.append(_drop([r.image_id for r in rows], ds.exclude[qi], k))
        conn.rollback()
    return found, lat, plan


def _plan(conn, ds: Dataset, k: int, region: Region, vtype, region_plan) -> str:
    text = "\n".join(explain_lines(conn, ds.model_id, ds.dim, ds.queries[0], k + 1, region, vtype, region_plan,
                                   explain=EXPLAIN_PLAN))
    if "embeddings_hnsw_" in text:
        return "plan: hnsw"
    if "idx_locations_geom" in text:
        return "plan: gist+sort"
    return "plan: seq+sort"


def faiss_hnsw(vectors: np.ndarray, ef_search: int):
    """(FAISS IndexHNSWFlat of VECTORS with geoloc's M / ef_construction, seconds to build it). One
    thread for the build, as pgvector 0.8.0 builds single-process, and for the queries, as one
    PostgreSQL backend answers one query (FAISS's default is every core)."""
    import faiss

    faiss.omp_set_num_threads(1)
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(vectors.shape[1], hnsw.HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = hnsw.HNSW_EF_CONSTRUCTION
    index.add(vectors)
    index.hnsw.efSearch = ef_search
    return index, time.perf_counter() - t


def build_faiss(ds: Dataset, ef_search: int):
    index, ds.build["FAISS HNSW"] = faiss_hnsw(ds.vectors, ef_search)
    return index


def run_faiss(index, ds: Dataset, k: int, masks, ef_search: int, regions: list[Region]):
    import faiss

    found, lat = [], []
    for qi, q in enumerate(ds.queries):
        t = time.perf_counter()
        params = None
        if regions[qi].within_m is not None:
            inside = np.nonzero(geodesic_within(ds.lat, ds.lng, (regions[qi].lat, regions[qi].lng),
                                                regions[qi].within_m))[0]
            params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBatch(inside.astype(np.int64)), efSearch=ef_search)
        _, pos = index.search(q[None, :], k + 1, params=params)
        lat.append(time.perf_counter() - t)
        pos = pos[0][pos[0] >= 0]
        found.append(_drop(ds.ids[pos].tolist(), ds.exclude[qi], k))
    return found, lat


def build_kdtree(ds: Dataset):
    from sklearn.neighbors import KDTree

    t = time.perf_counter()
    tree = KDTree(ds.vectors, leaf_size=40)
    ds.build["KDTree"] = time.perf_counter() - t
    return tree


def run_kdtree(tree, ds: Dataset, k: int, masks, count: int):
    found, lat = [], []
    n = len(ds.ids)
    for qi in range(count):
        q = ds.queries[qi][None, :]
        t = time.perf_counter()
        want = k + 1
        if masks[qi] is None:
            _, pos = tree.query(q, k=want)
            pos = pos[0]
        else:
            m = min(n, 8 * want)
            while True:
                _, pos = tree.query(q, k=m)
                pos = pos[0][masks[qi][pos[0]]]
                if len(pos) >= want or m == n:
                    break
                m = min(n, m * 2)
        lat.append(time.perf_counter() - t)
        found.append(_drop(ds.ids[pos].tolist(), ds.exclude[qi], k))
    return found, lat


# -------------------------------------------------------------------------------------------- run

def bench(ds: Dataset, args) -> list[Result]:
    k, nq = args.k, len(ds.queries)
    results = []
    print(f"{ds.name}: building FAISS HNSW and KDTree on {len(ds.ids):,} x {ds.dim} ...", file=sys.stderr)
    index = build_faiss(ds, args.ef_search)
    tree = build_kdtree(ds)
    exact_q = min(nq, args.exact_queries)
    kd_q = min(nq, args.kdtree_queries)
    for filt in ("none", f"near {args.radius:g} m"):
        if filt == "none":
            regions = [Region()] * nq
            masks = [None] * nq
        else:
            regions = [Region(c[0], c[1], float(args.radius)) for c in ds.centres]
            masks = [geodesic_within(ds.lat, ds.lng, c, args.radius) for c in ds.centres]
        truth = exact(ds, k, masks)
        inside = np.mean([m.sum() for m in masks]) if masks[0] is not None else len(ds.ids)
        note = "" if filt == "none" else f"{inside:,.0f} pts in region"
        print(f"{ds.name} [{filt}]: SQL+HNSW ...", file=sys.stderr)
        f, lat, plan = run_sql(ds, k, regions, args.ef_search, False, nq)
        results.append(Result(ds.name, len(ds.ids), ds.dim, filt, "SQL+HNSW (pgvector)", ds.build.get("SQL+HNSW"),
                              lat, recall(f, truth), nq, f"{plan}; {note}".strip("; ")))
        print(f"{ds.name} [{filt}]: SQL exact ...", file=sys.stderr)
        f, lat, plan = run_sql(ds, k, regions, args.ef_search, True, exact_q)
        results.append(Result(ds.name, len(ds.ids), ds.dim, filt, "SQL exact (no index)", None, lat,
                              recall(f, truth[:exact_q]), exact_q, plan))
        print(f"{ds.name} [{filt}]: FAISS ...", file=sys.stderr)
        f, lat = run_faiss(index, ds, k, masks, args.ef_search, regions)
        results.append(Result(ds.name, len(ds.ids), ds.dim, filt, "FAISS HNSW (in-process)", ds.build["FAISS HNSW"],
                              lat, recall(f, truth), nq))
        print(f"{ds.name} [{filt}]: KDTree ...", file=sys.stderr)
        f, lat = run_kdtree(tree, ds, k, masks, kd_q)
        results.append(Result(ds.name, len(ds.ids), ds.dim, filt, "sklearn KDTree", ds.build["KDTree"], lat,
                              recall(f, truth[:kd_q]), kd_q))
    return results


def print_table(results: list[Result], k: int, ef_search: int) -> None:
    print(f"\nk = {k}, ef_search = {ef_search}, {os.cpu_count()} CPU cores; latency = one query from Python "
          f"(SQL: execute + fetch over loopback TCP); recall@{k} against exact numpy search")
    head = (f"{'dataset':<20}{'n':>10}{'dim':>5}  {'filter':<12}{'method':<25}{'build s':>9}{'p50 ms':>9}"
            f"{'p95 ms':>9}{'recall@' + str(k):>11}{'queries':>9}  note")
    print(head)
    print("-" * len(head))
    for r in results:
        ms = np.array(r.latencies) * 1000
        build = "" if r.build_s is None else f"{r.build_s:.1f}"
        print(f"{r.dataset:<20}{r.n:>10,}{r.dim:>5}  {r.filter:<12}{r.method:<25}{build:>9}"
              f"{np.percentile(ms, 50):>9.2f}{np.percentile(ms, 95):>9.2f}{r.recall:>11.3f}{r.queries:>9}  {r.note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", action="append", default=[], help="registered model with embeddings (repeatable)")
    ap.add_argument("--n", type=int, default=100_000, help="synthetic vectors (0: none) [100000]")
    ap.add_argument("--dim", type=int, default=256, help="synthetic dimension [256]")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--exact-queries", type=int, default=50, help="queries for SQL without index (slow at 1M)")
    ap.add_argument("--kdtree-queries", type=int, default=50, help="queries for the KDTree (slow in 256-d)")
    ap.add_argument("-k", "--k", type=int, default=10)
    ap.add_argument("--ef-search", type=int, default=100)
    ap.add_argument("--radius", type=float, default=1000.0, help="metres of the geographic filter [1000]")
    ap.add_argument("--bench-db", default="geoloc_bench", help="database for the synthetic vectors [geoloc_bench]")
    ap.add_argument("--build-memory", help="maintenance_work_mem of the HNSW builds, e.g. 2GB "
                    "[the product's: sized from the rows]")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    results: list[Result] = []
    for model in args.model:
        results += bench(real_dataset(model, args.queries, args.seed, args.bench_db, args.build_memory), args)
    if args.n:
        results += bench(synthetic_dataset(args.n, args.dim, args.queries, args.seed, args.bench_db,
                                           args.build_memory), args)
    print_table(results, args.k, args.ef_search)


if __name__ == "__main__":
    main()
