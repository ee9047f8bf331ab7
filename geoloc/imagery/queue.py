"""The capture queue: one capture_jobs row per (location, backend), claimed with SKIP LOCKED.

A worker claims a job inside a transaction and keeps that transaction (and the row lock) open
while it captures; the images and the 'done' mark are written in the same transaction. So a
worker killed at any point leaves its job pending with no rows, and no two workers ever hold the
same job. Failures are recorded with their reason and retried after an exponential backoff.
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
    attempts: int


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


def claim(conn: Connection, backend: str, worker: str) -> Job | None:
    """The next due job, locked until the caller's transaction ends (None when none is due)."""
    row = conn.execute(sqlfiles.text("capture/claim.sql"), {"backend": backend, "worker": worker}).first()
    return Job(row.id, row.location_id, row.backend, row.attempts) if row else None


def seconds_until_due(conn: Connection, backend: str) -> float | None:
    """How long until another pending job nobody holds is due; None when the queue is drained."""
    wait = conn.execute(sqlfiles.text("capture/next_due.sql"), {"backend": backend}).scalar()
    return None if wait is None else float(wait)


def finish(conn: Connection, job: Job) -> None:
    conn.execute(sqlfiles.text("capture/finish.sql"), {"id": job.id})


def fail(conn: Connection, job: Job, error: str, max_attempts: int, backoff_s: float) -> str:
    """Record a failed attempt; returns the new status ('pending' to retry later, or 'failed')."""
    row = conn.execute(sqlfiles.text("capture/fail.sql"), {
        "id": job.id, "error": error[:2000], "max_attempts": max_attempts, "backoff_s": backoff_s}).one()
    return row.status


def counts(conn: Connection, backend: str) -> dict[str, int]:
    return dict(conn.execute(sqlfiles.text("capture/status.sql"), {"backend": backend}).all())
