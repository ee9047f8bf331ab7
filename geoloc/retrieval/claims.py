"""Exactly-once work claims for `geoloc embed`: session advisory locks, one per chunk of image ids.

A chunk is CHUNK (or --chunk) consecutive image ids (chunk_no = image_id / CHUNK), the same in every process. A
run embeds a chunk only while it holds the advisory lock (model_id, chunk_no), and re-reads what is
still missing after taking it; the lock is released only after the chunk's rows are committed. So two
runs of one model, on any machines, never compute the same embedding, while runs of different models
never see each other's locks. Nothing locks rows of `images`.

The locks live on one dedicated connection that is closed, not pooled, at the end: whatever is still
held goes with it, and so do the locks of a process that is killed. (model_id, -1) is the model's
index build lock (geoloc.retrieval.index), so chunk numbers are never negative.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module is imported by the CLI at start-up: keep it light
    from sqlalchemy.engine import Engine

CHUNK = 1024  # image ids per claim and per COPY + commit: little lost on interruption, a fair split
POLL_S = 0.2  # how often a run waiting for another run's chunk asks again


class ChunkClaims:
    """Advisory locks (model_id, chunk_no) held on a connection of their own (thread-safe)."""

    def __init__(self, engine: Engine, model_id: int):
        self.model_id = int(model_id)
        self._raw = engine.raw_connection()
        self._conn = self._raw.driver_connection
        self._conn.rollback()
        self._conn.autocommit = True

    def _call(self, function: str, chunk_no: int) -> bool:
        if chunk_no < 0:
            raise ValueError(f"chunk number {chunk_no} must not be negative")
        row = self._conn.execute(f"SELECT {function}(%s::integer, %s::integer)", (self.model_id, int(chunk_no)))
        return row.fetchone()[0] is not False

    def try_claim(self, chunk_no: int) -> bool:
        """Take the chunk if no other run holds it; False at once otherwise."""
        return self._call("pg_try_advisory_lock", chunk_no)

    def claim(self, chunk_no: int) -> None:
        """Take the chunk, waiting for the run that holds it to release it (or to die). Polls: a
        statement blocked in pg_advisory_lock would hold a snapshot that another run's CREATE INDEX
        CONCURRENTLY must wait for."""
        while not self.try_claim(chunk_no):
            time.sleep(POLL_S)

    def release(self, chunk_no: int) -> None:
        self._call("pg_advisory_unlock", chunk_no)

    def close(self) -> None:
        """Drop the connection and with it every lock still held."""
        self._raw.invalidate()
