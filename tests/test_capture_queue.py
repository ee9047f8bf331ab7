"""The capture queue: concurrent workers never capture a location twice; a killed run resumes cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from geoloc.collect.locations import ingest_locations
from geoloc.imagery.capture import ingest_capture

from imagery_server import StreetViewStub, static_api_setup

KEY = "queue-test-key"
LOCS = [1839, 1845, 1848, 1856, 1858, 1860]


@pytest.fixture
def pano_of(db_url, shared_data, engine, monkeypatch):
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    monkeypatch.setenv("GEOLOC_GOOGLE_API_KEY", KEY)
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, pano_id FROM locations WHERE id = ANY(:ids)"), {"ids": LOCS}).all())


def _state(engine):
    with engine.connect() as conn:
        per_loc = dict(conn.execute(sa.text("SELECT location_id, count(*) FROM images GROUP BY 1")).all())
        dupes = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT 1 FROM images GROUP BY location_id, heading, time_index HAVING count(*) > 1) d"
        )).scalar()
        jobs = {j.location_id: j for j in conn.execute(sa.text("SELECT * FROM capture_jobs"))}
        paths = {r.path for r in conn.execute(sa.text("SELECT path FROM images"))}
    return per_loc, dupes, jobs, paths


def test_two_workers_on_one_queue_capture_each_location_once(engine, shared_data, tmp_path, pano_of, monkeypatch):
    panos, _, _ = static_api_setup(pano_of, shared_data / "images", dates=1)
    with StreetViewStub(panos, KEY, delay_s=0.02, gate=2) as stub:
        monkeypatch.setenv("GEOLOC_STREETVIEW_BASE_URL", stub.url)
        # two independent runs (as two machines would) on the same queue at the same time
        results, errors = [], []

        def run():
            try:
                results.append(ingest_capture("static-api", location_ids=LOCS, out=tmp_path / "out", rate=None))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    requests = Counter((r["pano"], r["heading"]) for r in stub.requests)
    assert len(requests) == 6 * 4 and set(requests.values()) == {1}  # each view fetched exactly once
    assert sum(r.done for r in results) == 6 and sum(r.images for r in results) == 24
    per_loc, dupes, jobs, _ = _state(engine)
    assert per_loc == {loc: 4 for loc in LOCS} and dupes == 0
    assert all(j.status == "done" and j.attempts == 1 for j in jobs.values())
    print("\njobs per worker:", Counter(j.locked_by.rsplit(":", 2)[1] for j in jobs.values()))
    assert len({j.locked_by for j in jobs.values()}) == 2  # both runs took part


def test_killed_capture_resumes_cleanly(engine, db_url, shared_data, tmp_path, pano_of):
    panos, csv_text, _ = static_api_setup(pano_of, shared_data / "images", dates=2)
    (tmp_path / "panos.csv").write_text(csv_text)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "geoloc", "ingest", "capture", "--backend", "static-api",
            "--locations", ",".join(map(str, LOCS)), "--panos", str(tmp_path / "panos.csv"),
            "--out", str(out), "--rate", "1000"]
    # the third location's second date gets no answer: the worker (locations in id order) is killed
    # there, two locations done and one in flight, however slow the machine
    hung = f"hist-{LOCS[2]}-1"
    with StreetViewStub(panos, KEY, hang={hung}) as stub:
        env = dict(os.environ, GEOLOC_DATABASE_URL=db_url, GEOLOC_STREETVIEW_BASE_URL=stub.url)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300  # only against a hang of the test itself
        while not any(r.get("pano") == hung for r in list(stub.requests)) and proc.poll() is None:
            assert time.monotonic() < deadline, "the worker never reached the third location"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        per_loc, dupes, jobs, paths = _state(engine)
        assert sorted(per_loc) == LOCS[:2]
        assert set(per_loc.values()) == {8} and dupes == 0  # no partial location
        done_before = {loc for loc, j in jobs.items() if j.status == "done"}
        assert done_before == set(per_loc)
        # the location in flight: its attempt is counted and it stays with the dead worker until a rerun
        in_flight = {loc for loc, j in jobs.items() if j.status == "running"}
        assert in_flight == {LOCS[2]} and jobs[LOCS[2]].attempts == 1
        assert {(j.status, j.attempts) for loc, j in jobs.items() if loc not in done_before | in_flight} == {
            ("pending", 0)}
        # a kill between writing files and committing leaves files without rows; make sure some exist
        pending = sorted(set(LOCS) - done_before)[0]
        folder = out / "static-api" / str(pending)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{pending}_0_0_March 2023_2000-01-01 00:00:00.000000.jpg").write_bytes(b"half")
        (folder / f".{pending}_0_1_June 2022_2000-01-01 00:00:00.000000.jpg.tmp").write_bytes(b"half")
        stray = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - paths
        assert len(stray) >= 2
        requests_before = Counter(r["pano"] for r in stub.requests)

        stub.hang.clear()
        res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
    per_loc, dupes, jobs, paths = _state(engine)
    assert per_loc == {loc: 8 for loc in LOCS} and dupes == 0  # exactly one image set per location
    assert all(j.status == "done" for j in jobs.values())
    assert {loc: j.attempts for loc, j in jobs.items()} == {loc: 2 if loc in in_flight else 1 for loc in LOCS}
    assert jobs[min(in_flight)].last_error.startswith("attempt 1 stopped without finishing (worker ")
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert on_disk == paths  # ... which the rerun removed
    # locations finished before the kill were not fetched again
    again = Counter(r["pano"] for r in stub.requests) - requests_before
    assert not any(pano_of[loc] in again for loc in done_before)
