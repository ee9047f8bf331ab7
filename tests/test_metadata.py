"""`geoloc ingest metadata` against a real HTTP server on loopback that answers from the real data."""

from __future__ import annotations

import bisect
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from geoloc.collect.area import ingest_area
from geoloc.collect.metadata import ingest_metadata
from geoloc.collect.streetview_client import redact
from geoloc.config import REPO_ROOT
from geoloc.errors import ConfigError, RemoteError
from geoloc.imagery.rate import RateLimiter
from streetview_server import FakeStreetView, load_real_points

KEY = "AIzaTEST-key-9f3KqZ_never-leak"
FAST = dict(rate=0, concurrency=8, timeout=0.5, backoff=0.01, retries=12)  # faults never exhaust 12 retries


@pytest.fixture(scope="module")
def real_points(shared_data):
    return load_real_points(shared_data)


def add_grid_points(engine, shared_data, real_points, n_ok: int, n_zero: int, twins: int = 2) -> dict[int, tuple]:
    """Area 'sample' with grid points at real grid positions (spread over the data): every k-th point
    of the buffer CSVs (OK), of no_response_locations.csv (ZERO_RESULTS), and TWINS points 0.3 m
    from the first OK point (same panorama). Returns idx -> (expected status, expected pano_id)."""
    ingest_area(shared_data / "Stockholm.geojson", "sample")
    ok, zero = real_points
    chosen_ok = ok[:: max(1, len(ok) // n_ok)][:n_ok]
    chosen_zero = zero[:: max(1, len(zero) // n_zero)][:n_zero]
    rows, expected = [], {}
    for p in chosen_ok:
        rows.append({"idx": p.answer["_idx"], "lat": p.lat, "lng": p.lng})
        expected[p.answer["_idx"]] = ("OK", p.answer["pano_id"])
    for k in range(twins):
        p = chosen_ok[0]
        rows.append({"idx": 10_000_000 + k, "lat": p.lat + (k + 1) * 0.3 / 111_320, "lng": p.lng})
        expected[10_000_000 + k] = ("OK", p.answer["pano_id"])
    for p in chosen_zero:
        rows.append({"idx": p.answer["_idx"], "lat": p.lat, "lng": p.lng})
        expected[p.answer["_idx"]] = ("ZERO_RESULTS", None)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO grid_points (area_id, spacing_m, idx, geom) "
            "SELECT (SELECT id FROM areas WHERE name = 'sample'), 10, :idx, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)"),
            rows)
    return expected


def answers(engine) -> dict[int, tuple]:
    with engine.connect() as conn:
        return {r.idx: (r.status, r.pano_id) for r in conn.execute(sa.text(
            "SELECT g.idx, m.status, m.pano_id FROM metadata_answers m JOIN grid_points g ON g.id = m.grid_point_id"))}


def final_table(engine) -> tuple:
    """Everything the worker stores, without timestamps."""
    with engine.connect() as conn:
        a = conn.execute(sa.text(
            "SELECT g.idx, m.status, m.pano_id FROM metadata_answers m JOIN grid_points g ON g.id = m.grid_point_id "
            "ORDER BY g.idx")).all()
        p = conn.execute(sa.text(
            "SELECT pano_id, ST_AsText(geom), capture_month, copyright FROM panoramas ORDER BY pano_id")).all()
    return a, p


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("GEOLOC_GOOGLE_API_KEY", KEY)


def test_real_sample_is_checked_correctly_despite_faults(engine, shared_data, real_points, key_env):
    expected = add_grid_points(engine, shared_data, real_points, n_ok=120, n_zero=80)
    faults = {"every": {"429": 9, "500": 13, "garbage": 17, "over_query_limit": 19, "timeout": 29}}
    with FakeStreetView(shared_data, KEY, delay=1.0, **faults) as api:
        run = ingest_metadata("sample", base_url=api.url, **FAST)
    assert answers(engine) == expected
    assert run.checked == len(expected) == 202 and run.failed == 0 and run.remaining == 0
    assert run.answers == {"OK": 122, "ZERO_RESULTS": 80}
    assert set(api.faults) == {"429", "500", "garbage", "over_query_limit", "timeout"}
    assert run.retries == sum(api.faults.values()) and run.requests == api.requests
    assert run.new_panoramas == 120  # the two twins snap to an already known panorama
    with engine.connect() as conn:
        pano = conn.execute(sa.text(
            "SELECT ST_Y(geom) AS lat, ST_X(geom) AS lng, capture_month, copyright FROM panoramas WHERE pano_id = :p"),
            {"p": real_points[0][0].answer["pano_id"]}).one()
    real = real_points[0][0].answer
    assert (pano.lat, pano.lng) == pytest.approx((real["location"]["lat"], real["location"]["lng"]), abs=1e-9)
    assert pano.capture_month.strftime("%Y-%m") == real["date"] and pano.copyright == "© Google"
    # nothing left: a rerun asks nothing
    with FakeStreetView(shared_data, KEY) as api:
        again = ingest_metadata("sample", base_url=api.url, **FAST)
    assert (again.checked, again.requests, api.requests) == (0, 0, 0)


def test_limit_caps_a_run_and_the_next_run_continues(cli, engine, shared_data, real_points, key_env):
    expected = add_grid_points(engine, shared_data, real_points, n_ok=30, n_zero=30)
    with FakeStreetView(shared_data, KEY) as api:
        res = cli("ingest", "metadata", "--area", "sample", "--limit", "25", "--rate", "0", "--base-url", api.url)
        assert res.exit_code == 0, res.output
        assert api.requests == 25 and len(answers(engine)) == 25
        assert "37 of 62 grid points still unchecked" in res.stdout
        res = cli("ingest", "metadata", "--area", "sample", "--rate", "0", "--base-url", api.url)
        assert res.exit_code == 0, res.output
    assert answers(engine) == expected and api.requests == 62
    assert res.stdout.startswith("checked 37 points of area 'sample' in ")
    assert "0 of 62 grid points still unchecked" in res.stdout
    assert "metadata sample" in res.stderr  # the progress bar
    assert KEY not in res.output


class TimedStreetView(FakeStreetView):
    """The stand-in, also noting when each request reached it (time.monotonic, the limiter's clock)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []

    def _fault(self):
        arrived = time.monotonic()
        with self._lock:
            self.arrivals.append(arrived)
        return super()._fault()


def most_in_window(times: list[float], width: float) -> int:
    """The most TIMES that fall in one closed window of WIDTH seconds."""
    times = sorted(times)
    return max(bisect.bisect_right(times, t + width) - i for i, t in enumerate(times))


def test_most_in_window_counts_the_closed_window():
    assert most_in_window([0.0, 0.5, 1.0, 1.01, 3.0], 1.0) == 3
    assert most_in_window([5.0], 0.1) == 1


def test_rate_limit_is_respected(engine, shared_data, real_points, key_env):
    rate, concurrency = 20, 8
    add_grid_points(engine, shared_data, real_points, n_ok=20, n_zero=20, twins=0)
    with TimedStreetView(shared_data, KEY) as api:
        run = ingest_metadata("sample", base_url=api.url, rate=rate, concurrency=concurrency, timeout=30)
    assert run.checked == 40 and len(api.arrivals) == run.requests == 40
    # every request waits for its own slot, 1/20 s after the one before; a slow machine only delays
    # requests after their slot, and at most CONCURRENCY of them (one per thread) can be on their way
    # at once, so no second holds more than its 21 slots plus 8 late ones (unpaced: all 40 at once)
    assert most_in_window(api.arrivals, 1.0) <= rate + 1 + concurrency, sorted(api.arrivals)
    assert run.seconds >= (run.requests - 1) / rate - 0.01  # the last slot is 39 intervals after the first


def test_the_limiter_spaces_slots_one_interval_apart_and_saves_no_idle_time_for_a_burst():
    now, slept = [100.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = RateLimiter(200, clock=lambda: now[0], sleep=sleep)
    slots = [bucket.acquire() for _ in range(101)]
    assert slots == pytest.approx([100 + k / 200 for k in range(101)], abs=1e-9)
    assert now[0] == pytest.approx(100.5) and len(slept) == 100  # the first call goes at once
    now[0] += 10.0  # idle: the next call goes at once, the one after it waits a whole interval again
    assert bucket.acquire() == now[0] and len(slept) == 100
    assert bucket.acquire() == pytest.approx(110.505) and slept[-1] == pytest.approx(0.005)
    assert RateLimiter(None, clock=lambda: 7.0, sleep=sleep).acquire() == 7.0 and len(slept) == 101


def test_threads_share_one_schedule_of_slots():
    bucket = RateLimiter(50, clock=lambda: 0.0, sleep=lambda seconds: None)  # time stands still
    slots: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            slot = bucket.acquire()
            with lock:
                slots.append(slot)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(slots) == pytest.approx([k / 50 for k in range(200)], abs=1e-9)  # no slot given twice


def _worker(db_url: str, base: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "GEOLOC_DATABASE_URL": db_url, "GEOLOC_GOOGLE_API_KEY": KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "geoloc", "ingest", "metadata", "--area", "sample", "--base-url", base,
         "--backoff", "0.01", "--timeout", "0.5", "--retries", "12", *extra],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_killed_midway_resumes_to_the_same_final_table(engine, db_url, shared_data, real_points, key_env):
    expected = add_grid_points(engine, shared_data, real_points, n_ok=150, n_zero=150)
    faults = {"every": {"429": 9, "500": 13, "garbage": 19, "timeout": 31}, "delay": 1.0}
    with FakeStreetView(shared_data, KEY, **faults) as api:
        ingest_metadata("sample", base_url=api.url, **FAST)
    uninterrupted = final_table(engine)
    assert answers(engine) == expected
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM metadata_answers; DELETE FROM panoramas;"))

    with FakeStreetView(shared_data, KEY, **faults) as api:
        # --rate 30: the 300 points take 10 s at least, so the kill after 80 answers (2.7 s) comes mid-way
        # even when this process waits seconds for a CPU; the deadline only guards against a hang
        proc = _worker(db_url, api.url, "--rate", "30", "--concurrency", "4")
        deadline = time.monotonic() + 240
        while len(answers(engine)) < 80 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = answers(engine)
        stored = len(at_kill)
        assert proc.returncode == -signal.SIGKILL
        assert 80 <= stored < len(expected), "the run should have been killed mid-way"
        requested_before = Counter(api.per_location)
        proc = _worker(db_url, api.url, "--rate", "0")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"checked {len(expected) - stored} points of area 'sample'" in out
    assert final_table(engine) == uninterrupted  # nothing lost, nothing stored twice
    # the rerun asked about exactly the points without an answer at the kill, those in flight included
    with engine.connect() as conn:
        where = {r.idx: f"{r.lat:.7f},{r.lng:.7f}" for r in conn.execute(sa.text(
            "SELECT idx, ST_Y(geom) AS lat, ST_X(geom) AS lng FROM grid_points"))}
        assert conn.execute(sa.text("SELECT count(*) FROM metadata_claims")).scalar() == 0
    asked_again = set(api.per_location - requested_before)
    assert asked_again == {where[idx] for idx in expected if idx not in at_kill}
    assert KEY not in out + err


def test_request_denied_stops_the_run_with_a_clear_message(cli, engine, shared_data, real_points, key_env, monkeypatch):
    add_grid_points(engine, shared_data, real_points, n_ok=40, n_zero=40)
    with FakeStreetView(shared_data, "another-key") as api:
        res = cli("ingest", "metadata", "--area", "sample", "--base-url", api.url, "--rate", "0")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-2:] == [
        "Error: the Street View metadata API answered REQUEST_DENIED: The provided API key is invalid.",
        "Hint: check GEOLOC_GOOGLE_API_KEY: a valid key with the Street View Static API enabled"]
    assert answers(engine) == {}
    assert api.requests <= 16  # stopped at once, not after every point
    # denied mid-run: what was answered before stays, the rest is left for the next run
    with FakeStreetView(shared_data, KEY, deny_after=30) as api:
        with pytest.raises(RemoteError, match="REQUEST_DENIED"):
            ingest_metadata("sample", base_url=api.url, rate=0, concurrency=1)
    assert len(answers(engine)) == 30
    monkeypatch.delenv("GEOLOC_GOOGLE_API_KEY")
    res = cli("ingest", "metadata", "--area", "sample")
    assert res.exit_code == 1 and res.stderr.startswith("Error: GEOLOC_GOOGLE_API_KEY is not set\nHint: export")


def test_key_never_appears_in_output_logs_errors_or_database(engine, db_url, shared_data, real_points, key_env):
    add_grid_points(engine, shared_data, real_points, n_ok=20, n_zero=20)
    with FakeStreetView(shared_data, KEY, every={"500": 3}) as api:
        proc = _worker(db_url, api.url, "--rate", "0")
        out, err = proc.communicate(timeout=60)
        # -vv: urllib3 logs every request line, key included, unless redacted
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM metadata_answers"))
        env = {**os.environ, "GEOLOC_DATABASE_URL": db_url, "GEOLOC_GOOGLE_API_KEY": KEY}
        verbose = subprocess.run(
            [sys.executable, "-m", "geoloc", "-vv", "ingest", "metadata", "--area", "sample", "--limit", "5",
             "--base-url", api.url], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and verbose.returncode == 0, err + verbose.stderr
    assert "key=***" in verbose.stderr and "GET /maps/api/streetview/metadata?location=" in verbose.stderr
    # unreachable server: the connection errors name the URL; the key must be redacted there too
    closed = subprocess.run(
        [sys.executable, "-m", "geoloc", "ingest", "metadata", "--area", "sample", "--retries", "0",
         "--base-url", "http://127.0.0.1:9"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert closed.returncode == 1
    assert "Error: 20 points in a row got no usable answer; last: " in closed.stderr
    assert "ConnectionError" in closed.stderr
    for text in (out, err, verbose.stdout, verbose.stderr, closed.stdout, closed.stderr):
        assert KEY not in text
    with engine.connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_type = 'BASE TABLE'")).scalars().all()
        for table in tables:
            dump = conn.execute(sa.text(f'SELECT coalesce(string_agg(t::text, \'\'), \'\') FROM "{table}" AS t')).scalar()
            assert KEY not in dump, table
    assert redact(f"http://h/x?location=1,2&key={KEY}&a=b", KEY) == "http://h/x?location=1,2&key=***&a=b"


def test_bad_options_and_unknown_area(cli, engine, key_env):
    res = cli("ingest", "metadata", "--area", "nowhere", "--base-url", "http://127.0.0.1:9")
    assert res.exit_code == 1 and res.stderr.startswith("Error: area 'nowhere' does not exist\n")
    res = cli("ingest", "metadata", "--area", "nowhere", "--base-url", "ftp://x")
    assert res.stderr.splitlines()[0] == "Error: Street View base URL 'ftp://x' is not an http(s) URL"
    res = cli("ingest", "metadata", "--area", "nowhere", "--concurrency", "0")
    assert res.stderr.splitlines()[0] == "Error: --concurrency 0: must be at least 1"
    with pytest.raises(ConfigError):
        ingest_metadata("nowhere", base_url="nothing")


class WatchedStreetView(FakeStreetView):
    """The stand-in, noting the most requests it had in flight at once; each answer waits (10 s at
    most, once) until REACH requests are in flight, so a worker that asks one point at a time shows."""

    def __init__(self, *args, reach: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.reach, self.most_in_flight = reach, 0

    def _wait_at_gate(self, location: str) -> None:
        with self.opened:
            self.per_location[location] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight >= self.reach:
                self.reach = 0
                self.opened.notify_all()
            if not self.opened.wait_for(lambda: self.reach == 0, timeout=10):
                self.reach = 0


def test_a_worker_process_keeps_its_concurrency_in_flight_and_counts_every_request(
        engine, db_url, shared_data, real_points, key_env):
    """The worker in its own process (as in production), the server in this one. Its speed is
    measured by benchmarks/pipeline_bench.py."""
    expected = add_grid_points(engine, shared_data, real_points, n_ok=150, n_zero=150, twins=0)
    with WatchedStreetView(shared_data, KEY, reach=8) as api:
        # --timeout 30: a loaded machine makes answers slow, not lost
        proc = _worker(db_url, api.url, "--rate", "0", "--concurrency", "8", "--timeout", "30")
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    match = re.search(r"checked 300 points of area 'sample' in [\d.]+ s \((\d+) requests, [\d.]+/s", out)
    assert match, out
    assert api.most_in_flight == 8  # --concurrency 8 requests at once, never more
    assert answers(engine) == expected
    # what the worker reports is what the server saw; a retry (a slow answer) is counted, never lost
    assert int(match.group(1)) == api.requests >= len(expected) == len(api.per_location)


def test_a_worker_that_loses_its_first_points_to_another_claims_the_next_ones(engine, shared_data, real_points):
    """Two workers that pick the same first points at once: the loser waits on the winner's claim
    rows, finds them taken, and goes on to the next points instead of ending its run with none."""
    from geoloc.collect.metadata import _Claims

    add_grid_points(engine, shared_data, real_points, n_ok=10, n_zero=10)
    with engine.connect() as conn:
        area_id = conn.execute(sa.text("SELECT id FROM areas WHERE name = 'sample'")).scalar_one()
        ids = conn.execute(sa.text("SELECT id FROM grid_points WHERE area_id = :a ORDER BY id"),
                           {"a": area_id}).scalars().all()
    got: dict[str, list] = {}
    with engine.connect() as other, engine.connect() as mine, engine.connect() as watch:
        winner = other.begin()  # the winner's claims of the first 4 points, not committed yet
        other.execute(sa.text("INSERT INTO metadata_claims (grid_point_id, worker, pid, claimed_at) "
                              "SELECT unnest(CAST(:ids AS bigint[])), 'other', pg_backend_pid(), now()"),
                      {"ids": ids[:4]})
        mine.execution_options(isolation_level="AUTOCOMMIT")
        loser = threading.Thread(target=lambda: got.setdefault("rows", _Claims(mine, "me", area_id, None).take(4)))
        loser.start()
        deadline = time.monotonic() + 60
        while not watch.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND datname = current_database()")).scalar():
            assert time.monotonic() < deadline, "the second worker never waited on the first one's claims"
            time.sleep(0.05)
            watch.rollback()
        winner.commit()
        loser.join(60)
    assert [r.id for r in got["rows"]] == ids[4:8]


def test_two_workers_on_one_area_request_every_point_exactly_once(engine, db_url, shared_data, real_points, key_env):
    """Two worker processes (as on two machines) on one area at once: they split the points."""
    expected = add_grid_points(engine, shared_data, real_points, n_ok=150, n_zero=150)
    # gate=5: no answer before 5 requests are in flight at once, more than one worker's --concurrency 4,
    # so both workers are asking before either gets an answer
    with FakeStreetView(shared_data, KEY, gate=5) as api:
        # --timeout 60: the held answers are slow, not lost (a retry would ask about a point again)
        procs = [_worker(db_url, api.url, "--rate", "0", "--concurrency", "4", "--timeout", "60") for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        assert KEY not in out + err
    assert answers(engine) == expected
    assert api.requests == len(expected) == len(api.per_location)
    assert set(api.per_location.values()) == {1}  # no point was requested twice
    checked = [int(re.match(r"checked (\d+) points", out).group(1)) for out, _ in outs]
    assert sum(checked) == len(expected) and min(checked) > 0, checked  # both did part of the work
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM metadata_claims")).scalar() == 0
