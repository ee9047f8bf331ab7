"""`geoloc serve` under load: N searches (photo uploads) from C concurrent clients over loopback HTTP,
against the same search through the library in-process.

    .venv/bin/python benchmarks/serve_bench.py --model mnv3-small           # the configured database
    .venv/bin/python benchmarks/serve_bench.py --scratch                    # a throwaway database (below)

Measured, with the same query photos (database images of the test split, read into memory once):
  library, cold   geoloc.retrieval.search.search([file], model): what one `geoloc search` call does,
                  loading the model every time (a few calls only)
  library, warm   the server's own search code (geoloc.serve.service.Service.search) called in this
                  process, one request after the other: model loaded once, no HTTP
  HTTP            `geoloc serve` started as a child process; --requests POST /api/search uploads from
                  --clients threads (one keep-alive session each); stops early after --max-seconds.
                  First --warm uploads from one client, to see the cost of HTTP alone.
                  Every answer must be HTTP 200 with k neighbours: anything else counts as an error.
--scratch builds a throwaway cluster in a temporary folder: the Test v1 locations, the Stockholm area
and the images of Test v1 from the shared data, an untrained MobileNetV3-Small (256-d, 160 px,
registered as 'bench-untrained') embedded with `embed_images`; it is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geoloc import config  # noqa: E402
from geoloc.childenv import child_env  # noqa: E402

SCRATCH_MODEL = "bench-untrained"
WARM_UP = 5  # unmeasured searches before the warm in-process and the HTTP runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(ms: list[float]) -> dict:
    ms = sorted(ms)
    pick = lambda q: ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]
    return {"n": len(ms), "p50": pick(0.5), "p95": pick(0.95), "mean": statistics.fmean(ms), "max": ms[-1]}


def scratch_database(tmp: Path) -> tuple[str, object]:
    """A throwaway cluster with Test v1 imported and an untrained model embedded; (url, cluster)."""
    from geoloc.collect.area import ingest_area
    from geoloc.collect.locations import ingest_locations
    from geoloc.db.cluster import Cluster
    from geoloc.db.migrate import migrate
    from geoloc.imagery.importer import ingest_images
    from geoloc.model.train import save_untrained
    from geoloc.retrieval.embed import embed_images

    shared = config.shared_data_dir()
    os.chmod(tmp, 0o755)  # as root the server runs as 'postgres' and must reach its data dir
    cluster = Cluster(tmp / "pg", free_port(), extra_settings={"fsync": "off", "synchronous_commit": "off"})
    cluster.init()
    cluster.start()
    cluster.create_database("geoloc")
    url = cluster.url("geoloc")
    migrate(url)
    os.environ["GEOLOC_DATABASE_URL"] = url
    t = time.perf_counter()
    ingest_locations([shared / "buffers" / "new_order_buffer_75.csv"])
    ingest_area(shared / "Stockholm.geojson", "stockholm")
    imported = ingest_images(shared / "images" / "Cropped_Test_v1_buffer_75").imported
    save_untrained(SCRATCH_MODEL, "mobilenetv3small", 256, None, seed=0, out=tmp / "models" / SCRATCH_MODEL)
    summary = embed_images(SCRATCH_MODEL)
    print(f"scratch database: {imported} images imported, {summary.embedded} embedded by {SCRATCH_MODEL} "
          f"in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return url, cluster


def query_photos(url: str, n: int, seed: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of N query images of the test split, chosen with SEED."""
    with sa.create_engine(url).connect() as conn:
        rows = conn.execute(sa.text("SELECT root, path FROM images WHERE split = 'test' AND is_query "
                                    "ORDER BY id")).all()
    if not rows:
        sys.exit("no query images of the test split in the database")
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    return [(Path(r.path).name, (Path(r.root) / r.path).read_bytes()) for r in rows]


def start_server(url: str, model: str, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = child_env({"GEOLOC_DATABASE_URL": url, "PYTHONPATH": str(config.REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "geoloc", "serve", "--port", str(port), "--model", model,
                                 "--workers", str(workers)], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"geoloc serve exited:\n{log.read_text()}")
        try:
            if requests.get(base + "/api/models", timeout=2).status_code == 200:
                return proc, base
        except requests.ConnectionError:
            pass
        time.sleep(0.25)
    proc.terminate()
    sys.exit(f"geoloc serve did not answer within 180 s:\n{log.read_text()}")


def http_load(base: str, photos, model: str, k: int, total: int, clients: int, max_seconds: float) -> dict:
    """TOTAL uploads from CLIENTS threads; latencies of the successful ones, errors counted."""
    lock = threading.Lock()
    next_index = iter(range(total))
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + max_seconds

    def client():
        session = requests.Session()
        while time.monotonic() < stop_at:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            name, data = photos[i % len(photos)]
            t = time.perf_counter()
            try:
                res = session.post(base + "/api/search", params={"model": model, "k": k},
                                   files={"file": (name, data, "image/jpeg")}, timeout=120)
                ok = res.status_code == 200 and len(res.json()["neighbours"]) == k
                problem = None if ok else f"HTTP {res.status_code}: {res.text[:200]}"
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
            ms = (time.perf_counter() - t) * 1000
            with lock:
                (errors.append(problem) if problem else latencies.append(ms))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    wall = time.perf_counter() - started
    done = len(latencies) + len(errors)
    return {**(percentiles(latencies) if latencies else {"n": 0}), "errors": len(errors),
            "first_errors": errors[:3], "requests": done, "of": total, "seconds": wall,
            "per_second": done / wall if wall else 0.0}


def library_warm(url: str, photos, model: str, k: int, n: int) -> dict:
    from geoloc.serve.service import Service

    service = Service(url, model)
    service.warm()
    for name, data in photos[:WARM_UP]:  # first calls pay for lazy initialisation: not measured
        service.search(data, name, model=model, k=k)
    ms = []
    for i in range(n):
        name, data = photos[i % len(photos)]
        t = time.perf_counter()
        out = service.search(data, name, model=model, k=k)
        ms.append((time.perf_counter() - t) * 1000)
        assert len(out["neighbours"]) == k
    return percentiles(ms)


def library_cold(url: str, photos, model: str, k: int, n: int, tmp: Path) -> dict:
    from geoloc.retrieval.search import search

    ms = []
    for i in range(n):
        name, data = photos[i % len(photos)]
        path = tmp / name
        path.write_bytes(data)  # the library searches files
        t = time.perf_counter()
        [res] = search([path], model, k=k, url=url)
        ms.append((time.perf_counter() - t) * 1000)
        assert len(res.neighbours) == k
    return percentiles(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="registered model (default: the server's default; --scratch: its own)")
    ap.add_argument("--scratch", action="store_true", help="build and use a throwaway database (see above)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="geoloc serve --workers")
    ap.add_argument("--max-seconds", type=float, default=300, help="stop the HTTP run after this long")
    ap.add_argument("--warm", type=int, default=50, help="in-process warm searches")
    ap.add_argument("--cold", type=int, default=3, help="library search() calls (model loaded each time)")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--photos", type=int, default=40, help="distinct query photos, cycled")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="geoloc-serve-bench-"))
    cluster = None
    proc = None
    try:
        if args.scratch:
            url, cluster = scratch_database(tmp)
            model = args.model or SCRATCH_MODEL
        else:
            from geoloc.serve.service import Service, database_url

            url = database_url()
            model = args.model or Service(url).default_model
        photos = query_photos(url, args.photos, args.seed)
        results = {"model": model, "k": args.k, "photos": len(photos), "clients": args.clients,
                   "workers": args.workers, "cores": os.cpu_count()}
        results["library_warm"] = library_warm(url, photos, model, args.k, args.warm)
        proc, base = start_server(url, model, args.workers, tmp / "serve.log")
        http_load(base, photos, model, args.k, WARM_UP, 1, args.max_seconds)  # not measured
        results["http_1"] = http_load(base, photos, model, args.k, args.warm, 1, args.max_seconds)
        results["http"] = http_load(base, photos, model, args.k, args.requests, args.clients, args.max_seconds)
        proc.terminate()
        proc.wait(30)
        proc = None
        # last: each call leaves a model and its input pipeline behind, which slows this process down
        results["library_cold"] = library_cold(url, photos, model, args.k, args.cold, tmp) if args.cold else None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if cluster is not None:
            from geoloc.db import engine as db_engine

            db_engine.get_engine(url).dispose()
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(json.dumps(results, indent=1))
    print(f"\nmodel {model}, k={args.k}, {len(photos)} distinct photos, {os.cpu_count()} cores")
    print(f"{'path':40} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'errors':>6} {'req/s':>6}")
    rows = [("library search() (model loaded per call)", results["library_cold"]),
            ("library in-process, warm (1 at a time)", results["library_warm"]),
            ("HTTP, 1 client (1 at a time)", results["http_1"]),
            (f"HTTP, {args.clients} clients, {args.workers} worker(s)", results["http"])]
    for label, r in rows:
        if not r or not r.get("n"):
            continue
        rate = f"{r['per_second']:.1f}" if "per_second" in r else "-"
        print(f"{label:40} {r['n']:>5} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['mean']:>8.1f} "
              f"{r.get('errors', 0):>6} {rate:>6}")
    if results["http"]["errors"] or results["http"]["requests"] < args.requests:
        sys.exit(f"HTTP run: {results['http']['errors']} errors, {results['http']['requests']} of "
                 f"{args.requests} requests done")


if __name__ == "__main__":
    main()
