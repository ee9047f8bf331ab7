"""`geoloc ingest capture`: workers that drain the capture queue with one backend.

Each worker thread has its own database connection and its own backend (HTTP session or
browser). Per job: claim it and count the attempt (committed before anything else, see
geoloc.imagery.queue), clear stray files of an earlier killed attempt, capture, write every file
atomically (temporary name + rename), then insert the location's image rows and mark the job
done in one transaction. Killed anywhere, a rerun finds no rows of the job, counts the killed
attempt and tries again (or marks the job failed after its last attempt); files of the dead
attempt are removed before it is retried.
Requests of all workers share one configurable rate; nothing here works around a provider's
limits - users must follow their imagery provider's terms.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from .. import config
from ..db import sqlfiles
from ..db.engine import begin, check
from ..errors import ConfigError, GeolocError, InputError, RemoteError
from . import queue
from .backends import CapturedImage, CaptureFailed, LocationInfo, check_backend, open_backend
from .crop import write_atomically
from .names import image_name
from .rate import RateLimiter
from .store import ImageRecord, inspect_jpeg, insert_images, mark_queries

DEFAULT_RATE = 2.0  # requests (API calls, page loads, clicks) per second, all workers together
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 30.0
DEFAULT_WORKERS = 1
DEFAULT_VERSION = "v1"  # version label of captured images


def default_out() -> Path:
    return config.data_dir() / "captures"


@dataclass
class CaptureSummary:
    backend: str
    out: Path
    selected: int = 0
    enqueued: int = 0
    done: int = 0  # jobs finished by this run
    failed: int = 0  # jobs that used up their attempts in this run
    retries: int = 0  # failed attempts that will be retried later
    images: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (location id, reason) per failed attempt
    queue: dict[str, int] = field(default_factory=dict)  # jobs per status after the run
    seconds: float = 0.0


class _Run:
    """State shared by the worker threads of one run."""

    def __init__(self, backend: str, out: Path, settings, limiter: RateLimiter, version: str,
                 max_attempts: int, backoff_s: float, bar: tqdm, summary: CaptureSummary):
        self.backend, self.out, self.settings, self.limiter = backend, out, settings, limiter
        self.version, self.max_attempts, self.backoff_s = version, max_attempts, backoff_s
        self.bar, self.summary = bar, summary
        self.stop = threading.Event()
        self.fatal: BaseException | None = None
        self.lock = threading.Lock()
        self.token = uuid.uuid4().hex[:6]  # tells apart runs of one process

    def record(self, **counts) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self.summary, name, getattr(self.summary, name) + n)

    def error(self, location_id: int, reason: str) -> None:
        with self.lock:
            self.summary.errors.append((location_id, reason))


def _location(conn: Connection, location_id: int) -> LocationInfo:
    r = conn.execute(sqlfiles.text("capture/location.sql"), {"id": location_id}).one()
    return LocationInfo(r.id, r.lat, r.lng, r.pano_id, r.capture_month, r.split)


def _clear_strays(conn: Connection, run: _Run, location_id: int) -> None:
    """Remove files a killed earlier attempt left in this location's folder (never recorded ones)."""
    folder = run.out / run.backend / str(location_id)
    if not folder.is_dir():
        return
    prefix = f"{run.backend}/{location_id}/"
    recorded = set(conn.execute(sqlfiles.text("capture/own_paths.sql"),
                                {"root": str(run.out), "prefix": prefix + "%"}).scalars())
    for f in folder.iterdir():
        if f.is_file() and prefix + f.name not in recorded:
            f.unlink()


def _store(conn: Connection, run: _Run, loc: LocationInfo, captured: list[CapturedImage]) -> int:
    records = []
    for img in captured:
        rel = f"{run.backend}/{loc.id}/" + image_name(loc.id, img.heading, img.time_index, img.capture_month,
                                                       img.taken_at)
        facts = inspect_jpeg(img.jpeg)
        write_atomically(run.out / rel, img.jpeg)
        records.append(ImageRecord(loc.id, img.heading, img.time_index, img.capture_month, img.taken_at,
                                   str(run.out), rel, facts.sha256, facts.bytes, facts.width, facts.height,
                                   loc.split, run.version, f"capture:{run.backend}"))
    inserted = insert_images(conn, records)
    mark_queries(conn, [loc.id])
    return len(inserted)


def _fail(conn: Connection, run: _Run, job: queue.Job, worker: str, reason: str) -> str | None:
    with conn.begin():
        status = queue.fail(conn, job, worker, reason, run.max_attempts, run.backoff_s)
    run.error(job.location_id, reason)
    return status


def _capture(conn: Connection, run: _Run, backend, worker: str, job: queue.Job) -> bool:
    """One counted attempt at a claimed job; False when the run must stop."""
    with conn.begin():
        loc = _location(conn, job.location_id)
        _clear_strays(conn, run, loc.id)
    try:
        captured = backend.capture(loc)
        if not captured:
            raise CaptureFailed(f"location {loc.id}: the backend returned no images")
        with conn.begin():
            if not queue.finish(conn, job, worker):  # not ours any more: store nothing
                run.error(loc.id, "the job was taken over by another worker; its images were not stored")
                return True
            stored = _store(conn, run, loc, captured)
    except RemoteError as exc:  # e.g. a refused key: every other job would fail the same way
        _fail(conn, run, job, worker, str(exc))
        run.fatal = exc
        run.stop.set()
        return False
    except (ConfigError, SQLAlchemyError):
        raise  # a wrong setting or a database problem, not this location's: no attempt is counted
    except Exception as exc:  # noqa: BLE001 - any other failure is this attempt's, recorded and retried
        reason = str(exc) if isinstance(exc, (CaptureFailed, GeolocError)) else f"{type(exc).__name__}: {exc}"
        status = _fail(conn, run, job, worker, reason)
        run.record(**({"failed": 1} if status == "failed" else {"retries": 1}))
        if status == "failed":
            run.bar.update()
        return True
    run.record(done=1, images=stored)
    run.bar.update()
    return True


def _work_one(conn: Connection, run: _Run, backend, worker: str) -> bool:
    """Claim and capture one job; False when nothing is left for this worker (or the run must stop)."""
    with conn.begin():
        job = queue.claim(conn, run.backend, worker, run.max_attempts)
        wait = queue.seconds_until_due(conn, run.backend) if job is None else None
    if job is None:
        if wait is None:
            return False
        run.stop.wait(min(max(wait, 0.05), 1.0))
        return True
    if job.status == "failed":  # its last allowed attempt died with its worker
        run.error(job.location_id, job.last_error or "the last attempt stopped without finishing")
        run.record(failed=1)
        run.bar.update()
        return True
    try:
        return _capture(conn, run, backend, worker, job)
    except BaseException:
        try:
            with conn.begin():
                queue.release(conn, job, worker)
        except Exception:  # noqa: BLE001 - a lost connection: the job is taken over once its session is gone
            pass
        raise


def _worker(run: _Run, index: int) -> None:
    worker = f"{socket.gethostname()}:{os.getpid()}:{run.token}:w{index}"
    backend = None
    try:
        backend = open_backend(run.backend, run.settings, run.limiter)
        with check().connect() as conn:
            with conn.begin():
                queue.hold_session(conn)
            while not run.stop.is_set() and _work_one(conn, run, backend, worker):
                pass
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
        run.fatal = run.fatal or exc
        run.stop.set()
    finally:
        if backend is not None:
            backend.close()


def ingest_capture(backend: str, split: str | None = None, location_ids: list[int] | None = None,
                   workers: int = DEFAULT_WORKERS, rate: float | None = DEFAULT_RATE, out: Path | None = None,
                   settings=None, max_attempts: int = DEFAULT_MAX_ATTEMPTS, backoff_s: float = DEFAULT_BACKOFF_S,
                   version: str = DEFAULT_VERSION, retry_failed: bool = False, progress: bool = False) -> CaptureSummary:
    """Queue the selected locations (split or ids; none = just resume the queue) and capture them.

    Files go to OUT/<backend>/<location id>/<original-style name>.jpg; rows record OUT as root.
    """
    started = time.perf_counter()
    check_backend(backend)
    if workers < 1:
        raise InputError(f"--workers: {workers} must be at least 1")
    if rate is not None and rate <= 0:
        raise InputError(f"--rate: {rate:g} must be a positive number of requests per second")
    if max_attempts < 1:
        raise InputError(f"--max-attempts: {max_attempts} must be at least 1")
    out = Path(out or default_out()).expanduser().resolve()
    summary = CaptureSummary(backend, out)
    with begin() as conn:
        if split is not None or location_ids is not None:
            selected = queue.select_locations(conn, split, location_ids)
            if location_ids is not None:
                unknown = sorted(set(location_ids) - set(selected))
                if unknown:
                    raise InputError(f"unknown location(s) {', '.join(map(str, unknown[:10]))}"
                                     f"{' ...' if len(unknown) > 10 else ''}",
                                     hint="import them first with 'geoloc ingest locations'")
            summary.selected = len(selected)
            summary.enqueued = queue.enqueue(conn, backend, selected)
        if retry_failed:
            queue.retry_failed(conn, backend)
        jobs = queue.counts(conn, backend)
        # running jobs too: those of killed workers are taken over (the others' workers finish them)
        pending = jobs.get("pending", 0) + jobs.get("running", 0)

    limiter = RateLimiter(rate)
    with tqdm(total=pending, desc=f"capturing ({backend})", unit="loc", file=sys.stderr,
              disable=not progress) as bar:
        run = _Run(backend, out, settings, limiter, version, max_attempts, backoff_s, bar, summary)
        threads = [threading.Thread(target=_worker, args=(run, i), name=f"capture-w{i}", daemon=True)
                   for i in range(workers if pending else 0)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            run.stop.set()  # workers finish (or roll back) the location they are on
            for t in threads:
                t.join()
            raise
    with check().connect() as conn:
        summary.queue = queue.counts(conn, backend)
    summary.seconds = time.perf_counter() - started
    if run.fatal is not None:
        raise run.fatal
    return summary
