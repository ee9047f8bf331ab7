"""The capture queue: one capture_jobs row per (location, backend), claimed with SKIP LOCKED.

Claiming a job is a short transaction of its own that counts the attempt and marks the job
'running', owned by the worker's database session (pid). The capture itself runs outside any
transaction; the images and the 'done' mark are then written in one transaction that first
checks the worker still owns the job. A worker killed at any point leaves its job running with
no rows and its attempt counted; its session ends with it, and the next claim takes the job over
(another attempt) or, when that was the last attempt allowed, marks it failed. So no two workers
ever capture the same job, and a location that kills its worker is not retried forever. Failures
are recorded with their reason and retried after an exponential backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from ..db import sqlfiles


@dataclass(frozen=True)
class Job:
    id: int
    location_id: int
    backend: str
    attempts: int  # this one included
    status: str  # 'running' (capture it) or 'failed' (its last attempt died: given up)
    last_error: str | None = None


def hold_session(conn: Connection) -> None:
    """Make CONN's session the owner of this worker's claims: the server drops it (and so frees the
    claims) soon after the worker's machine stops answering."""
    conn.execute(sqlfiles.text("capture/worker_session.sql"))


def select_locations(conn: Connection, split: str | None = None, location_ids: list[int] | None = None) -> list[int]:
    return list(conn.execute(sqlfiles.text("capture/select_locations.sql"),
                             {"split": split, "location_ids": location_ids}).scalars())


def enqueue(conn: Connection, backend: str, location_ids: list[int]) -> int:
    """Queue jobs for these locations (not for ones already queued or with images); returns how many."""
    if not location_ids:
        return 0
    return conn.execute(sqlfiles.text("capture/enqueue.sql"),
                        {"backend": backend, "location_ids": list(location_ids)}).rowcount


def retry_failed(conn: Connection, backend: str) -> int:
    return conn.execute(sqlfiles.text("capture/retry_failed.sql"), {"backend": backend}).rowcount


def claim(conn: Connection, backend: str, worker: str, max_attempts: int) -> Job | None:
    """The next due job, its attempt counted (commit before capturing); None when none is due."""
    row = conn.execute(sqlfiles.text("capture/claim.sql"),
                       {"backend": backend, "worker": worker, "max_attempts": max_attempts}).first()
    return Job(row.id, row.location_id, row.backend, row.attempts, row.status, row.last_error) if row else None


def seconds_until_due(conn: Connection, backend: str) -> float | None:
    """How long until another job is due; None when the queue has nothing left for this worker."""
    wait = conn.execute(sqlfiles.text("capture/next_due.sql"), {"backend": backend}).scalar()
    return None if wait is None else float(wait)


def finish(conn: Connection, job: Job, worker: str) -> bool:
    """Mark the job done (in the transaction that stores its images); False when WORKER no longer owns it."""
    return conn.execute(sqlfiles.text("capture/finish.sql"), {"id": job.id, "worker": worker}).first() is not None


def fail(conn: Connection, job: Job, worker: str, error: str, max_attempts: int, backoff_s: float) -> str | None:
    """Record a failed attempt; returns the new status ('pending' to retry later, or 'failed'),
    None when WORKER no longer owns the job."""
    row = conn.execute(sqlfiles.text("capture/fail.sql"), {
        "id": job.id, "worker": worker, "error": error[:2000], "max_attempts": max_attempts,
        "backoff_s": backoff_s}).first()
    return row.status if row else None


def release(conn: Connection, job: Job, worker: str) -> None:
    """Put a running job back to pending without counting its attempt."""
    conn.execute(sqlfiles.text("capture/release.sql"), {"id": job.id, "worker": worker})


def counts(conn: Connection, backend: str) -> dict[str, int]:
    return dict(conn.execute(sqlfiles.text("capture/status.sql"), {"backend": backend}).all())
