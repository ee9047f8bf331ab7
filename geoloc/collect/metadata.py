"""The Street View metadata worker: asks the API about every unchecked grid point of an area.

Workers on any number of machines can run on one area at once: each claims small batches of
unchecked points (metadata/claim.sql) in the name of its database session, and a point claimed
by a live session is never handed to another worker, so every point is requested once. HTTP runs
on a thread pool under one token-bucket rate limit; the main thread stores each answer in its own
short transaction (panorama, answer and the removal of the claim together, ON CONFLICT DO
NOTHING). A point counts as checked only once its answer is committed: a worker killed at any
moment loses at most the requests in flight, its claims die with its session, and the next
worker continues with the unchecked points. Points whose tries all failed transiently are not
stored: their claims are given back and a later run asks again.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection
from tqdm import tqdm

from ..db import sqlfiles
from ..db.engine import check
from ..errors import InputError, RemoteError
from ..imagery.queue import hold_session
from .grid import area_id as find_area
from . import streetview_client as sv
from .streetview_client import Answer, MetadataClient, TransientFailure

DEFAULT_RATE = 50.0  # requests/s; Google allows up to 30,000 metadata requests a minute
DEFAULT_CONCURRENCY = 8
MAX_FAILURES_IN_A_ROW = 20


@dataclass
class MetadataRun:
    area: str
    checked: int = 0  # answers stored by this run
    answers: Counter = field(default_factory=Counter)  # per status, this run
    new_panoramas: int = 0
    failed: int = 0  # points given up on (transient failures), left unchecked
    requests: int = 0  # HTTP requests, retries included
    retries: int = 0
    remaining: int = 0  # unchecked points of the area after the run
    elsewhere: int = 0  # ... of which live workers elsewhere hold claims on
    total: int = 0  # grid points of the area
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def _store(conn: Connection, worker: str, point_id: int, answer: Answer) -> bool:
    """One statement in autocommit = one short transaction per answer; True when the panorama was new."""
    ok = answer.status == "OK"
    row = conn.execute(sqlfiles.text("metadata/store_answer.sql"), {
        "grid_point_id": point_id, "status": answer.status, "pano_id": answer.pano_id if ok else None,
        "lat": answer.lat, "lng": answer.lng, "capture_month": answer.capture_month,
        "copyright": answer.copyright, "worker": worker}).one()
    return bool(row.new_panorama)


def _release(conn: Connection, worker: str, ids: list[int] | None = None) -> None:
    conn.execute(sqlfiles.text("metadata/release.sql"), {"worker": worker, "ids": ids})


class _Claims:
    """Hands out the points this worker claimed, a batch at a time (conn: autocommit, the worker's session).

    Passes go through the area in id order; when one ends, another pass starts from the beginning
    for points other workers gave back or left when they were killed, until a pass finds nothing.
    """

    def __init__(self, conn: Connection, worker: str, area_id: int, spacing: float | None):
        self.conn, self.worker, self.area_id, self.spacing = conn, worker, area_id, spacing
        self.after, self.found_this_pass, self.done = 0, False, False
        self.skip: list[int] = []  # points this run gave up on

    def take(self, batch: int) -> list:
        while not self.done and batch > 0:
            got = self.conn.execute(sqlfiles.text("metadata/claim.sql"), {
                "area_id": self.area_id, "spacing": self.spacing, "after_id": self.after, "skip": self.skip,
                "batch": batch, "worker": self.worker}).one()
            ids = list(got.ids)
            if ids:
                self.after, self.found_this_pass = max(ids), True
                rows = self.conn.execute(sqlfiles.text("metadata/claimed_points.sql"),
                                         {"ids": ids, "worker": self.worker}).all()
                if rows:
                    return rows
            elif got.candidates:
                continue  # another worker claimed these first; the next statement passes them by
            elif self.found_this_pass:
                self.after, self.found_this_pass = 0, False
            else:
                self.done = True
        return []


def ingest_metadata(area: str, limit: int | None = None, rate: float = DEFAULT_RATE,
                    concurrency: int = DEFAULT_CONCURRENCY, base_url: str | None = None,
                    spacing: float | None = None, timeout: float = sv.DEFAULT_TIMEOUT,
                    retries: int = sv.DEFAULT_RETRIES, backoff: float = sv.DEFAULT_BACKOFF, progress: bool = False) -> MetadataRun:
    """Check the unchecked grid points of AREA against the metadata API (resumable)."""
    if limit is not None and limit < 0:
        raise InputError(f"--limit {limit}: must be 0 or more")
    if concurrency < 1:
        raise InputError(f"--concurrency {concurrency}: must be at least 1")
    if rate < 0:
        raise InputError(f"--rate {rate:g}: must be 0 (no limit) or more requests per second")
    client = MetadataClient(sv.api_key(), sv.base_url(base_url), rate=rate, timeout=timeout, retries=retries,
                            backoff=backoff)
    engine = check()
    with engine.connect() as conn:
        aid = find_area(conn, area)
        prog = conn.execute(sqlfiles.text("metadata/progress.sql"), {"area_id": aid, "spacing": spacing}).one()
    run = MetadataRun(area, total=prog.total)
    todo = prog.total - prog.checked - prog.claimed
    todo = todo if limit is None else min(todo, limit)
    start = time.perf_counter()
    bar = tqdm(total=todo, desc=f"metadata {area}", unit="pt", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    in_a_row = 0
    last_failure = ""

    def handle(fut: Future, point_id: int) -> None:
        nonlocal in_a_row, last_failure
        try:
            answer = fut.result()
        except TransientFailure as exc:
            run.failed += 1
            in_a_row += 1
            last_failure = str(exc)
            claims.skip.append(point_id)
            _release(writer, worker, [point_id])
            if in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise RemoteError(f"{in_a_row} points in a row got no usable answer; last: {last_failure}",
                                  hint="the API or the network is failing; rerun later to continue") from None
        else:
            in_a_row = 0
            run.new_panoramas += _store(writer, worker, point_id, answer)
            run.checked += 1
            run.answers[answer.status] += 1
        bar.update(1)
        bar.set_postfix({**dict(run.answers), "retries": client.retried, "failed": run.failed}, refresh=False)

    # the main thread's own connection, in autocommit: each claim and each answer is committed on
    # its own, and its session (pid) is the one the claims belong to
    writer = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    hold_session(writer)
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    claims = _Claims(writer, worker, aid, spacing)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="metadata")
    pending: dict[Future, int] = {}
    claimed: deque = deque()
    handed = 0
    try:
        while True:
            while len(pending) < 2 * concurrency and (limit is None or handed < limit):
                if not claimed:
                    want = 2 * concurrency if limit is None else min(2 * concurrency, limit - handed)
                    claimed.extend(claims.take(want))
                    if not claimed:
                        break
                point = claimed.popleft()
                pending[pool.submit(client.lookup, point.lat, point.lng)] = point.id
                handed += 1
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                handle(fut, pending.pop(fut))
    except BaseException:
        # keep what already came back (valid answers), drop the rest, then stop
        client.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        try:
            for fut in [f for f in pending if f.done() and not f.cancelled() and f.exception() is None]:
                run.new_panoramas += _store(writer, worker, pending.pop(fut), fut.result())
                run.checked += 1
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    finally:
        try:
            _release(writer, worker)  # whatever is still claimed goes back to the other workers
        except Exception:  # noqa: BLE001 - a lost session has given its claims back anyway
            pass
        writer.close()
        bar.close()
        run.requests, run.retries = client.requests, client.retried
        run.seconds = time.perf_counter() - start
    pool.shutdown(wait=True)
    with engine.connect() as conn:
        prog = conn.execute(sqlfiles.text("metadata/progress.sql"), {"area_id": aid, "spacing": spacing}).one()
    run.remaining, run.elsewhere = prog.total - prog.checked, prog.claimed
    return run
