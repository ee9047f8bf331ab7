"""How fast the collection pipeline runs on this machine, on the real Stockholm data, in a throwaway
cluster (fsync off) in a temporary folder that is deleted at the end:

  grid      `ingest_area` of Stockholm.geojson, then `ingest_grid` at 10 m (about 290,000 points)
  metadata  `geoloc ingest metadata --rate 0 --concurrency 8 --limit N` as its own process against
            the loopback stand-in of the metadata API (tests/streetview_server.py), N grid points
  buffers   the greedy buffer selection (`ingest_buffers`, 100/75/60/50/45/35 m) over the 6,562
            panoramas of the buffer CSVs
  images    `ingest_images` of the shared image tree (checksum + full decode of every file)

    nice -n 5 .venv/bin/python benchmarks/pipeline_bench.py                 # everything, a few minutes
    nice -n 5 .venv/bin/python benchmarks/pipeline_bench.py --only grid --only metadata

The test suite checks what these steps store; the figures are here because on a shared machine a
test cannot tell a slow step from a busy CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from geoloc import config  # noqa: E402

STEPS = ("grid", "metadata", "buffers", "images")
METERS = [100, 75, 60, 50, 45, 35]
KEY = "bench-key-not-a-secret"


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database(cluster, name: str) -> str:
    """A fresh migrated database NAME on the cluster; GEOLOC_DATABASE_URL points at it."""
    from geoloc.db.migrate import migrate

    cluster.provision(name)
    url = cluster.url(name)
    migrate(url)
    os.environ["GEOLOC_DATABASE_URL"] = url
    return url


def row(step: str, what: str, count: int, seconds: float, unit: str) -> tuple:
    return step, what, count, seconds, count / seconds if seconds > 0 else float("nan"), unit


def bench_grid_and_metadata(cluster, shared: Path, steps: set[str], requests: int) -> list[tuple]:
    from geoloc.collect.area import ingest_area
    from geoloc.collect.grid import ingest_grid

    rows = []
    url = database(cluster, "bench_grid")
    ingest_area(shared / "Stockholm.geojson", "stockholm")
    t = time.perf_counter()
    grid = ingest_grid("stockholm", 10)
    seconds = time.perf_counter() - t
    if "grid" in steps:
        rows.append(row("grid", "Stockholm at 10 m (ingest_grid)", grid.added, seconds, "points/s"))
    if "metadata" in steps:
        from streetview_server import FakeStreetView

        env = {**os.environ, "GEOLOC_DATABASE_URL": url, "GEOLOC_GOOGLE_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
        with FakeStreetView(shared, KEY) as api:
            proc = subprocess.run(
                [sys.executable, "-m", "geoloc", "ingest", "metadata", "--area", "stockholm", "--rate", "0",
                 "--concurrency", "8", "--limit", str(requests), "--timeout", "30", "--base-url", api.url],
                env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"metadata worker failed:\n{proc.stderr}")
        m = re.search(r"checked (\d+) points of area 'stockholm' in ([\d.]+) s \((\d+) requests", proc.stdout)
        if not m:
            sys.exit(f"unexpected worker output:\n{proc.stdout}")
        rows.append(row("metadata", f"worker process, concurrency 8, loopback ({m.group(1)} points)",
                        int(m.group(3)), float(m.group(2)), "requests/s"))
    return rows


def bench_buffers(cluster, shared: Path) -> list[tuple]:
    import sqlalchemy as sa

    from geoloc.collect.buffers import ingest_buffers
    from geoloc.collect.locations import ingest_locations
    from geoloc.db.engine import begin

    database(cluster, "bench_buffers")
    ingest_locations([shared / "buffers"])
    with begin() as conn:
        conn.execute(sa.text("DELETE FROM locations"))
        candidates = conn.execute(sa.text("SELECT count(*) FROM panoramas")).scalar()
    t = time.perf_counter()
    result = ingest_buffers(meters=METERS)
    seconds = time.perf_counter() - t
    return [row("buffers", f"selection over {candidates:,} panoramas (ingest_buffers)", candidates, seconds,
                "panoramas/s"),
            row("buffers", "  of which the selection SQL", candidates, result.select_seconds, "panoramas/s")]


def bench_images(cluster, shared: Path, folder: Path) -> list[tuple]:
    from geoloc.collect.locations import ingest_locations
    from geoloc.imagery.importer import ingest_images

    database(cluster, "bench_images")
    ingest_locations([shared / "buffers"])
    t = time.perf_counter()
    summary = ingest_images(folder)
    seconds = time.perf_counter() - t
    where = folder.relative_to(shared) if folder.is_relative_to(shared) else folder
    return [row("images", f"import of {where} ({summary.found:,} files)", summary.imported, seconds, "images/s")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=STEPS, help="run only these steps (repeatable)")
    ap.add_argument("--requests", type=int, default=2000, help="grid points the metadata worker checks")
    ap.add_argument("--images", type=Path, help="folder to import [the whole shared image tree]")
    args = ap.parse_args()
    steps = set(args.only or STEPS)
    shared = config.shared_data_dir()

    from geoloc.db.cluster import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="geoloc-pipeline-bench-"))
    os.chmod(tmp, 0o755)  # as root the server runs as 'postgres' and must reach its data dir
    cluster = Cluster(tmp / "pg", free_port(), extra_settings={"fsync": "off", "synchronous_commit": "off"})
    load_before = load_avg()
    rows: list[tuple] = []
    try:
        cluster.init()
        cluster.start()
        if steps & {"grid", "metadata"}:
            rows += bench_grid_and_metadata(cluster, shared, steps, args.requests)
        if "buffers" in steps:
            rows += bench_buffers(cluster, shared)
        if "images" in steps:
            rows += bench_images(cluster, shared, args.images or shared / "images")
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average before {load_before}, "
          f"after {load_avg()}")
    print(f"{'step':<9} {'what':<62} {'count':>8} {'seconds':>8} {'rate':>10}")
    for step, what, count, seconds, rate, unit in rows:
        print(f"{step:<9} {what:<62} {count:>8,} {seconds:>8.2f} {rate:>10.1f} {unit}")


if __name__ == "__main__":
    main()
