"""Workers that die and workers' children: a killed capture attempt is counted, and no child process
(chromedriver, Chromium) sees the API key or the database URL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from geoloc.collect.locations import ingest_locations
from geoloc.config import REPO_ROOT

from imagery_server import StreetViewStub, ViewerStub, static_api_setup, viewer_setup

KEY = "AIzaSafety-key-7d2e_never-leak"
DB_SECRET = "postgresql://geoloc:s3cret-pw-never-leak@127.0.0.1:1/geoloc"
GOOD, STUCK = 1839, 1845  # queued in this order: GOOD is captured before the run gets stuck


@pytest.fixture
def pano_of(db_url, shared_data, engine):
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, pano_id FROM locations WHERE id = ANY(:ids)"),
                                 {"ids": [STUCK, GOOD]}).all())


def _job(engine, location_id: int):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT * FROM capture_jobs WHERE location_id = :id"), {"id": location_id}).one()


def _session_alive(engine, pid: int) -> bool:
    with engine.connect() as conn:  # a new transaction: pg_stat_activity is read once per transaction
        return bool(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar())


def _wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_killed_capture_attempts_are_counted_and_the_job_ends_failed(engine, db_url, shared_data, tmp_path, pano_of):
    """The backend hangs on one location; each run is SIGKILLed there. The attempts add up, and
    the run after the last allowed attempt marks the job failed without trying it again. The
    reruns just resume the queue, whose only job left is the one of the killed worker."""
    panos, _, _ = static_api_setup(pano_of, shared_data / "images", dates=1)
    stuck_pano = pano_of[STUCK]
    args = [sys.executable, "-m", "geoloc", "ingest", "capture", "--backend", "static-api",
            "--locations", f"{GOOD},{STUCK}", "--out", str(tmp_path / "out"), "--rate", "1000",
            "--max-attempts", "2"]
    resume = [a for a in args if a not in ("--locations", f"{GOOD},{STUCK}")]
    with StreetViewStub(panos, KEY, hang={stuck_pano}) as stub:
        env = dict(os.environ, GEOLOC_DATABASE_URL=db_url, GEOLOC_STREETVIEW_BASE_URL=stub.url,
                   GEOLOC_GOOGLE_API_KEY=KEY)

        def stuck_requests() -> int:
            return sum(r.get("pano") == stuck_pano for r in list(stub.requests))

        for attempt in (1, 2):
            proc = subprocess.Popen(args if attempt == 1 else resume, cwd=REPO_ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_for(lambda: stuck_requests() == attempt or proc.poll() is not None, "the stuck request")
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
            job = _job(engine, STUCK)
            assert (job.status, job.attempts) == ("running", attempt)  # counted, though the worker died
            assert _job(engine, GOOD).status == "done"
            _wait_for(lambda: not _session_alive(engine, job.locked_pid), "the killed worker's session to end", 10)

        res = subprocess.run(resume, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.stderr.rstrip().endswith("Error: 1 location(s) failed after 2 attempts\n"
                                        "Hint: see last_error in v_capture_jobs; rerun with --retry-failed")
    assert stuck_requests() == 2  # not tried a third time
    job = _job(engine, STUCK)
    assert (job.status, job.attempts) == ("failed", 2)
    assert job.last_error.startswith("attempt 2 stopped without finishing (worker ")
    assert f"location {STUCK}: attempt 2 stopped without finishing" in res.stderr
    assert (_job(engine, GOOD).status, _job(engine, GOOD).attempts) == ("done", 1)
    with engine.connect() as conn:
        per_loc = dict(conn.execute(sa.text("SELECT location_id, count(*) FROM images GROUP BY 1")).all())
    assert per_loc == {GOOD: 4}
    assert KEY not in res.stdout + res.stderr


def _descendants(pid: int) -> list[int]:
    """Every live process below PID (walks /proc by parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.slow  # starts Chromium
def test_chromedriver_and_chromium_never_see_the_secrets(shared_data, pano_of, monkeypatch):
    from geoloc.imagery.backends import LocationInfo
    from geoloc.imagery.backends.browser import BrowserBackend, BrowserSettings
    from geoloc.imagery.rate import RateLimiter

    monkeypatch.setenv("GEOLOC_GOOGLE_API_KEY", KEY)
    monkeypatch.setenv("GEOLOC_DATABASE_URL", DB_SECRET)
    pages, _ = viewer_setup({STUCK: pano_of[STUCK]}, shared_data / "images", dates=1)
    raw = sorted((shared_data / "raw_examples").glob("*.png"))[0]
    with ViewerStub(pages, raw) as viewer:
        backend = BrowserBackend(BrowserSettings(base_url=viewer.url, settle_s=0), RateLimiter(None))
        try:
            images = backend.capture(LocationInfo(STUCK, 59.3, 18.07, pano_of[STUCK], None, "test"))
            driver_pid = backend.driver.service.process.pid
            pids = [driver_pid] + _descendants(driver_pid)
            environs, names = {}, {}
            for pid in pids:
                try:
                    environs[pid] = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
                    names[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
                except (FileNotFoundError, ProcessLookupError):
                    continue  # a helper that already exited
        finally:
            backend.close()
    assert len(images) == 4
    assert names[driver_pid].startswith("chromedriver")
    assert sum(name.startswith("chrom") for pid, name in names.items() if pid != driver_pid) >= 2, names
    for pid, environ in environs.items():
        for secret in (KEY, DB_SECRET, "s3cret-pw-never-leak", "GEOLOC_GOOGLE_API_KEY", "GEOLOC_DATABASE_URL"):
            assert secret not in environ, (names[pid], secret)
    # the minimal environment, not an empty one (Chromium's helpers reuse that memory for their titles)
    assert "PATH=" in environs[driver_pid]
    assert any("PATH=" in environs[pid] for pid in environs if pid != driver_pid)


def test_a_worker_session_is_probed_so_a_vanished_machine_loses_its_claims(engine):
    from geoloc.imagery.queue import hold_session

    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT inet_client_addr() IS NOT NULL")).scalar()  # TCP, as workers use
        before = conn.execute(sa.text("SHOW tcp_keepalives_idle")).scalar()
        hold_session(conn)
        conn.commit()
        after = [conn.execute(sa.text(f"SHOW {name}")).scalar()
                 for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")]
    assert before != "60" and after == ["60", "10", "6"]
