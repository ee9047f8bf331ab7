"""The product's own search path at scale: recall@10 and latency of `geoloc.retrieval.search.knn` (the
one SQL statement of `geoloc search`) on N synthetic 256-d vectors spread over Stockholm, unfiltered
and with 250 m / 1 km / area filters, beside FAISS HNSW and an exact NumPy scan of the same queries.

    nice -n 5 .venv/bin/python benchmarks/scale_bench.py --n 100000 --kind vector --kind halfvec
    nohup nice -n 5 timeout 3h .venv/bin/python benchmarks/scale_bench.py --n 1000000 --load-only &
    nice -n 5 .venv/bin/python benchmarks/scale_bench.py --n 1000000 --exact-queries 50

What runs is what the product runs:
  load    locations and images by COPY (as ingest does), embeddings through
          geoloc.retrieval.embed.store_embeddings (binary COPY into staging, then the merge), one
          transaction per chunk of --chunk rows, like `geoloc embed`
  index   geoloc.retrieval.index.build_index (single process, the model's partial HNSW index), once
          per --kind (vector or halfvec): the second kind replaces the first
  search  geoloc.retrieval.search.knn after set_search_options, one call per query over loopback
          TCP; the region plan (GiST + exact ranking, or the HNSW iterative scan) is the SQL's own
          choice and is reported per filter
The data set is the one search_bench.py generates (same seed: same vectors), kept in a database of
its own (geoloc_bench_scale_<n>_<dim>_s<seed>) and reused when it already holds the same data, so the
1M case loads and builds once (--load-only) and is queried by later runs. Ground truth is exact
brute force in NumPy (float32); FAISS is IndexHNSWFlat with the same M/ef_construction/ef_search,
one thread, filtered by an id selector of the region's points (found in NumPy, timed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_bench import (LowRankClusters, bench_url, copy_places, faiss_hnsw, geodesic_within,  # noqa: E402
                          random_points)

from geoloc.db.engine import begin, get_engine  # noqa: E402
from geoloc.retrieval import index as hnsw  # noqa: E402
from geoloc.retrieval import search as S  # noqa: E402
from geoloc.retrieval.embed import store_embeddings  # noqa: E402

META_TABLE = "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb NOT NULL)"
AREA_NAME = "bench-sodermalm"
# a district-sized polygon (about 2.5 x 1.5 km) south of the old town, lng lat
AREA = [(18.030, 59.305), (18.095, 59.305), (18.100, 59.320), (18.060, 59.324), (18.028, 59.318), (18.030, 59.305)]


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_avg()}] {msg}", file=sys.stderr, flush=True)


def dataset(n: int, dim: int, seed: int, n_queries: int):
    gen = LowRankClusters(dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    vectors = gen.sample(n, rng)
    lat, lng = random_points(n, rng)
    queries = gen.sample(n_queries, np.random.default_rng(seed + 2))
    centres = list(zip(*random_points(n_queries, np.random.default_rng(seed + 3))))
    return vectors, lat, lng, queries, centres


def ensure_loaded(n: int, dim: int, seed: int, vectors, lat, lng, chunk: int) -> tuple[str, int, float]:
    """(url, model id, load seconds): the bench database holds exactly these rows (loaded once)."""
    import sqlalchemy as sa

    from geoloc.retrieval.vectors import vector_cursor

    name = f"scale-{n}-{dim}-s{seed}"
    fingerprint = hashlib.sha1(np.ascontiguousarray(vectors[:10000]).tobytes() + lat.tobytes()).hexdigest()
    url = bench_url(f"geoloc_bench_scale_{n}_{dim}_s{seed}")
    with begin(url) as conn:
        conn.execute(sa.text(META_TABLE))
        row = conn.execute(sa.text("SELECT m.id, b.value FROM models m JOIN bench_meta b ON b.key = m.name "
                                   "WHERE m.name = :n"), {"n": name}).first()
        if row is not None and row.value.get("fingerprint") == fingerprint:
            log(f"reusing {n:,} rows loaded earlier")
            return url, row.id, row.value["load_s"]
    with begin(url) as conn:
        conn.execute(sa.text("TRUNCATE eval_predictions, eval_runs, embeddings, images, locations, models, areas, "
                             "bench_meta CASCADE"))
        model_id = conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                                        "VALUES (:n, 'benchmark', :d, 0, 'ready') RETURNING id"),
                                {"n": name, "d": dim}).scalar()
        wkt = "MULTIPOLYGON(((" + ", ".join(f"{x} {y}" for x, y in AREA) + ")))"
        conn.execute(sa.text("INSERT INTO areas (name, geom, area_m2, source) VALUES (:n, ST_GeomFromText(:w, 4326), "
                              "ST_Area(ST_GeomFromText(:w, 4326)::geography), 'benchmark')"),
                     {"n": AREA_NAME, "w": wkt})
    t = time.perf_counter()
    with begin(url) as conn:
        with vector_cursor(conn) as cur:
            copy_places(cur, lat, lng)
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('images', 'id'), :n)"), {"n": n})
    log(f"locations and images: {n:,} rows in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    ids = np.arange(1, n + 1, dtype=np.int64)
    for start in range(0, n, chunk):
        with begin(url) as conn:  # one transaction per chunk, as geoloc embed's writer does
            store_embeddings(conn, name, model_id, dim, ids[start:start + chunk], vectors[start:start + chunk])
    load_s = time.perf_counter() - t
    log(f"embeddings: {n:,} rows through store_embeddings in {load_s:.1f} s")
    with begin(url) as conn:
        conn.execute(sa.text("ANALYZE locations; ANALYZE images; ANALYZE embeddings"))
    with begin(url) as conn:
        conn.execute(sa.text("INSERT INTO bench_meta VALUES (:n, CAST(:h AS jsonb))"),
                     {"n": name, "h": json.dumps({"fingerprint": fingerprint, "load_s": load_s})})
    return url, model_id, load_s


def ensure_index(url: str, model_id: int, dim: int, kind: str, memory: str | None) -> float | None:
    """Build the model's index as KIND unless it already is (then None: the earlier build's time is
    in the models row)."""
    import sqlalchemy as sa

    with begin(url) as conn:
        current = hnsw.indexed_type(conn, model_id, dim)
        h = conn.execute(sa.text("SELECT b.value FROM bench_meta b JOIN models m ON m.name = b.key "
                                 "WHERE m.id = :i"), {"i": model_id}).scalar()
    if current is not None and current.name == kind:
        log(f"reusing the {kind} index built earlier ({h.get('build_s_' + kind, float('nan')):.0f} s)")
        return h.get("build_s_" + kind)
    log(f"building the {kind} HNSW index (single process) ...")
    t = time.perf_counter()
    with get_engine(url).connect() as conn:
        hnsw.build_index(conn, model_id, dim, memory=memory, kind=kind)
    build_s = time.perf_counter() - t
    log(f"{kind} index built in {build_s:.1f} s")
    with begin(url) as conn:
        conn.execute(sa.text("UPDATE bench_meta b SET value = value || CAST(:h AS jsonb) FROM models m "
                             "WHERE m.name = b.key AND m.id = :i"), {"h": json.dumps({"build_s_" + kind: build_s}),
                                                                     "i": model_id})
    return build_s


def sizes(url: str, model_id: int) -> dict[str, int]:
    import sqlalchemy as sa

    with begin(url) as conn:
        return dict(conn.execute(sa.text(
            "SELECT 'table', pg_total_relation_size('embeddings') - coalesce(pg_relation_size(to_regclass(:ix)), 0) "
            "UNION ALL SELECT 'index', coalesce(pg_relation_size(to_regclass(:ix)), 0)"),
            {"ix": hnsw.index_name(model_id)}).all())


# ------------------------------------------------------------------------------------------ methods

def filters(lat, lng, centres, radii, area: bool):
    """[(label, regions per query, masks per query)]"""
    from shapely.geometry import Polygon
    from shapely import contains_xy

    nq = len(centres)
    out = [("none", [S.Region()] * nq, [None] * nq)]
    for r in radii:
        out.append((f"{r:g} m", [S.Region(c[0], c[1], float(r)) for c in centres],
                    [geodesic_within(lat, lng, c, r) for c in centres]))
    if area:
        mask = contains_xy(Polygon(AREA), lng, lat)
        out.append(("area", [S.Region(area=AREA_NAME)] * nq, [mask] * nq))
    return out


def truth_of(vectors, queries, masks, k: int):
    out, lat = [], []
    for q, m in zip(queries, masks):
        t = time.perf_counter()
        sims = vectors @ q
        if m is not None:
            sims = np.where(m, sims, -np.inf)
        top = np.argpartition(-sims, k)[:k]
        top = top[np.isfinite(sims[top])]
        out.append(top[np.argsort(-sims[top])] + 1)
        lat.append(time.perf_counter() - t)
    return out, lat


def recall(found, truth) -> float:
    return float(np.mean([len(set(map(int, f)) & set(map(int, t))) / len(t) for f, t in zip(found, truth) if len(t)]))


def run_sql(url: str, model_id: int, dim: int, queries, regions, k: int, ef_search: int,
            plan: S.RegionPlan | None = None):
    found, lat = [], []
    with get_engine(url).connect() as conn:
        vt = hnsw.indexed_type(conn, model_id, dim) or hnsw.vector_type(dim)
        S.set_search_options(conn, ef_search)
        used = S.explain(conn, model_id, dim, queries[0], k, regions[0], vtype=vt, plan=plan)
        S.knn(conn, model_id, dim, queries[0], k, regions[0], vtype=vt, plan=plan)  # warm-up
        for q, region in zip(queries, regions):
            t = time.perf_counter()
            rows = S.knn(conn, model_id, dim, q, k, region, vtype=vt, plan=plan)
            lat.append(time.perf_counter() - t)
            found.append([r.image_id for r in rows])
        conn.rollback()
    return found, lat, used


def run_faiss(index, lat_, lng_, queries, regions, masks, k: int, ef_search: int):
    import faiss
    from shapely import contains_xy
    from shapely.geometry import Polygon

    found, lat = [], []
    for q, region, m in zip(queries, regions, masks):
        t = time.perf_counter()
        params = None
        if m is not None:
            if region.within_m is not None:
                inside = geodesic_within(lat_, lng_, (region.lat, region.lng), region.within_m)
            else:
                inside = contains_xy(Polygon(AREA), lng_, lat_)
            sel = faiss.IDSelectorBatch(np.nonzero(inside)[0].astype(np.int64))
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef_search)
        _, pos = index.search(q[None, :], k, params=params)
        lat.append(time.perf_counter() - t)
        found.append(pos[0][pos[0] >= 0] + 1)
    return found, lat


def ms(lat) -> tuple[float, float]:
    a = np.array(lat) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--kind", action="append", choices=["vector", "halfvec"],
                    help="index type(s) to measure, in order (repeatable) [the product's default]")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", "--k", type=int, default=10)
    ap.add_argument("--ef-search", type=int, default=S.DEFAULT_EF_SEARCH)
    ap.add_argument("--radius", type=float, action="append", help="metres (repeatable) [250, 1000]")
    ap.add_argument("--chunk", type=int, default=20_000, help="rows per store_embeddings transaction")
    ap.add_argument("--build-memory", help="maintenance_work_mem of the HNSW build, e.g. 2GB "
                    "[the product's: sized from the rows]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load-only", action="store_true", help="load and build the index(es), then stop")
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--sweep-only", action="store_true", help="only the plan sweep (index as it is)")
    ap.add_argument("--sweep", help="radii in metres, e.g. 100,250,500,1000,2000: time both plans of each "
                                    "(exact GiST and HNSW forced by the threshold) to place SMALL_REGION_PER_SQRT")
    args = ap.parse_args()
    kinds = args.kind or [hnsw.DEFAULT_INDEX_KIND]
    radii = args.radius or [250.0, 1000.0]

    log(f"start: n={args.n:,} dim={args.dim} kinds={kinds} ({os.cpu_count()} cores)")
    t = time.perf_counter()
    vectors, lat, lng, queries, centres = dataset(args.n, args.dim, args.seed, args.queries)
    log(f"generated in {time.perf_counter() - t:.1f} s")
    url, model_id, load_s = ensure_loaded(args.n, args.dim, args.seed, vectors, lat, lng, args.chunk)
    results, meta = [], {"n": args.n, "dim": args.dim, "k": args.k, "ef_search": args.ef_search,
                         "load_s": load_s, "cores": os.cpu_count(), "kinds": {}}
    regions_by = [] if args.load_only or args.sweep_only else filters(lat, lng, centres, radii, area=True)
    truths = {label: truth_of(vectors, queries, masks, args.k) for label, _, masks in regions_by}
    if args.sweep_only:
        sweep(url, model_id, args, lat, lng, vectors, queries, centres)
        return
    for kind in kinds:
        build_s = ensure_index(url, model_id, args.dim, kind, args.build_memory)
        meta["kinds"][kind] = {"build_s": build_s, **sizes(url, model_id)}
        if args.load_only:
            continue
        for label, regions, masks in regions_by:
            inside = "" if masks[0] is None else f"{np.mean([m.sum() for m in masks]):,.0f} pts in region"
            f, lt, plan = run_sql(url, model_id, args.dim, queries, regions, args.k, args.ef_search)
            results.append({"method": f"SQL knn ({kind})", "filter": label, "recall": recall(f, truths[label][0]),
                            "lat": lt, "plan": plan, "note": inside, "load": load_avg()})
            log(f"{kind} {label}: p50 {ms(lt)[0]:.2f} ms recall {results[-1]['recall']:.3f} {plan} {inside}")
    if not args.load_only:
        for label, _, _ in regions_by:
            results.append({"method": "NumPy exact", "filter": label, "recall": 1.0, "lat": truths[label][1],
                            "plan": "", "note": "", "load": load_avg()})
        if not args.no_faiss:
            log("building FAISS HNSW (in-process) ...")
            index, fb = faiss_hnsw(vectors, args.ef_search)
            meta["faiss_build_s"] = fb
            log(f"FAISS built in {fb:.1f} s")
            for label, regions, masks in regions_by:
                f, lt = run_faiss(index, lat, lng, queries, regions, masks, args.k, args.ef_search)
                results.append({"method": "FAISS HNSW", "filter": label, "recall": recall(f, truths[label][0]),
                                "lat": lt, "plan": "", "note": "", "load": load_avg()})
        print_table(results, meta)
    if args.sweep and not args.load_only:
        sweep(url, model_id, args, lat, lng, vectors, queries, centres)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": [
            {**r, "p50_ms": ms(r["lat"])[0], "p95_ms": ms(r["lat"])[1], "lat": None} for r in results]}, indent=1))
    log("done")


def sweep(url, model_id, args, lat, lng, vectors, queries, centres) -> None:
    """Both plans of the same filtered queries, forced through the threshold: where they cross."""
    nq = min(len(queries), 100)
    print(f"\nplan sweep ({nq} queries per row): exact = GiST + exact ranking, hnsw = iterative scan")
    print(f"{'radius m':>9}{'locations':>11}{'exact p50':>11}{'hnsw p50':>10}{'hnsw recall':>13}  load")
    for r in [float(x) for x in args.sweep.split(",")]:
        regions = [S.Region(c[0], c[1], r) for c in centres[:nq]]
        masks = [geodesic_within(lat, lng, c, r) for c in centres[:nq]]
        truth, _ = truth_of(vectors, queries[:nq], masks, args.k)
        row = {}
        for plan, threshold in (("exact", S.UNLIMITED_REGION), ("hnsw", 0)):
            f, lt, _ = run_sql(url, model_id, args.dim, queries[:nq], regions, args.k, args.ef_search,
                               S.RegionPlan(threshold, args.n))
            row[plan] = (ms(lt)[0], recall(f, truth))
        print(f"{r:>9g}{np.mean([m.sum() for m in masks]):>11,.0f}{row['exact'][0]:>11.2f}{row['hnsw'][0]:>10.2f}"
              f"{row['hnsw'][1]:>13.3f}  {load_avg()}", flush=True)


def print_table(results, meta) -> None:
    faiss_ = {r["filter"]: ms(r["lat"])[0] for r in results if r["method"] == "FAISS HNSW"}
    numpy_ = {r["filter"]: ms(r["lat"])[0] for r in results if r["method"] == "NumPy exact"}
    print(f"\nn = {meta['n']:,}, dim {meta['dim']}, k = {meta['k']}, ef_search = {meta['ef_search']}, "
          f"{meta['cores']} cores; load average at the end {load_avg()}")
    for kind, m in meta["kinds"].items():
        b = m["build_s"]
        print(f"index {kind}: build {'' if b is None else f'{b:.0f} s'}, table {m['table'] / 2**20:,.0f} MiB, "
              f"index {m['index'] / 2**20:,.0f} MiB")
    if "faiss_build_s" in meta:
        print(f"FAISS HNSW build (one thread) {meta['faiss_build_s']:.0f} s; embeddings loaded in {meta['load_s']:.0f} s")
    head = f"{'method':<22}{'filter':<8}{'p50 ms':>8}{'p95 ms':>8}{'recall':>8}{'/FAISS':>8}{'/NumPy':>8}  plan"
    print(head + "\n" + "-" * len(head))
    for r in results:
        p50, p95 = ms(r["lat"])
        ratio = lambda d: f"{p50 / d[r['filter']]:.2f}" if r["filter"] in d else ""  # noqa: E731
        print(f"{r['method']:<22}{r['filter']:<8}{p50:>8.2f}{p95:>8.2f}{r['recall']:>8.3f}{ratio(faiss_):>8}"
              f"{ratio(numpy_):>8}  {r['plan']} {r['note']}")


if __name__ == "__main__":
    main()
