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

import threading
import time
from typing import TYPE_CHECKING

from ..db import sqlfiles

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

CHUNK = 1024  # image ids per claim and per COPY + commit: little lost on interruption, a fair split
POLL_S = 0.2  # how often a run waiting for another run's chunk asks again


class ChunkClaims:
    """Advisory locks (model_id, chunk_no) held on a connection of their own, in autocommit (so no
    transaction of it holds a snapshot); thread-safe: the writer thread releases, the run claims."""

    def __init__(self, engine: Engine, model_id: int):
        self.model_id = int(model_id)
        self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._lock = threading.Lock()

    def _call(self, sql: str, chunk_no: int) -> bool:
        if chunk_no < 0:
            raise ValueError(f"chunk number {chunk_no} must not be negative")
        with self._lock:
            done = self._conn.execute(sqlfiles.text(sql), {"model_id": self.model_id, "chunk_no": int(chunk_no)})
            return done.scalar_one() is not False

    def try_claim(self, chunk_no: int) -> bool:
        """Take the chunk if no other run holds it; False at once otherwise."""
        return self._call("search/embed_claim.sql", chunk_no)

    def claim(self, chunk_no: int) -> None:
        """Take the chunk, waiting for the run that holds it to release it (or to die). Polls: a
        statement blocked in pg_advisory_lock would hold a snapshot that another run's CREATE INDEX
        CONCURRENTLY must wait for."""
        while not self.try_claim(chunk_no):
            time.sleep(POLL_S)

    def release(self, chunk_no: int) -> None:
        self._call("search/embed_release.sql", chunk_no)

    def close(self) -> None:
        """Drop the connection (closed, never pooled again) and with it every lock still held."""
        with self._lock:
            self._conn.invalidate()
            self._conn.close()
