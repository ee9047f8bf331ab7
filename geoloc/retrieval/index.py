"""Per-model HNSW indexes on the shared embeddings table.

All models share one ``embeddings`` column of type ``halfvec`` (16-bit floats) without a dimension,
which no index can take. Each model therefore gets a *partial* index (``WHERE model_id = N``) on an
expression that casts to its dimension, ``(embedding::halfvec(D))``. A query uses that index only when
its ORDER BY is the very same expression (``embedding::halfvec(D) <=> q``) and its WHERE implies
``model_id = N``; `vector_type` is the one place that writes the expression, so the index and every
query agree.

pgvector's HNSW takes ``vector`` up to 2,000 dimensions and ``halfvec`` up to 4,000. Indexes are
``halfvec`` by default (DEFAULT_INDEX_KIND: the stored values as they are, 40 % less index memory
than a ``vector`` graph, recall@10 within 0.001 of ``vector`` in benchmarks/scale_bench.py), and
models beyond 4,000 dimensions get no index (searched exactly). A ``vector(D)`` index widens the
stored halfvec values back to float32 (the same values in a larger graph). An index of another type
than the default is rebuilt by the next `ensure_index` (every `geoloc embed`); searches read the type
of the index that exists (`indexed_type`), so they use it meanwhile. Cosine distance (``<=>``,
``*_cosine_ops``) on the L2-normalised embeddings ranks exactly like inner product and Euclidean.

Replacing an index never leaves a model without one: the new graph is built beside the old under
``embeddings_hnsw_<id>_next`` with ``CREATE INDEX CONCURRENTLY`` (outside any transaction), then the
two are swapped by renaming in one short transaction and the old one is dropped with ``DROP INDEX
CONCURRENTLY``. None of these statements takes a lock that stops searches or embedding writes, of
this model or any other. A build that fails or whose process is killed leaves the old index in place
and at most an (INVALID) ``_next`` leftover, which the next build of that model drops first. Builds of
one model are serialised by a session advisory lock, (model_id, -1), held on the building connection.

Operations notes (pgvector 0.8.0, as installed):
- Builds run single-process (``max_parallel_maintenance_workers = 0``): parallel HNSW builds can
  overflow in pgvector < 0.8.2.
- A build gets the memory its graph needs (`build_memory`, at most GEOLOC_INDEX_MEMORY): a graph
  that outgrows it goes on on disk, many times slower, and the build's outcome says so (`spilled`).
- VACUUM on an HNSW index with many dead tuples is slow and may leave the graph poorly connected
  before 0.8.2, so after many of a model's rows are deleted its index is rebuilt instead: each index
  records the model's row count in its comment, and `ensure_index` (run by every `geoloc embed`)
  rebuilds it when the model has lost more than REBUILD_FRACTION of those rows. Indexes of deleted
  models are dropped.

Region-limited searches need no per-model index of their own: the schema's GiST index on embeddings
(model_id, geom) serves every model. `ensure_index` refreshes the table's planner statistics
(ANALYZE) whenever the model's row count changed, so a search right after `geoloc embed` sizes its
region from the new rows.
"""

from __future__ import annotations

import math
import re
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy.engine import Connection

from .. import config
from ..db import sqlfiles
from ..db.engine import check, transaction
from ..db.migrate import RUNTIME_INDEX_PREFIX

VECTOR_MAX_DIM = 2000  # pgvector: HNSW on vector
HALFVEC_MAX_DIM = 4000  # pgvector: HNSW on halfvec
INDEX_KINDS = ("vector", "halfvec")
# halfvec: 40 % smaller graph, recall@10 within 0.001 of vector at 100k x 256 (docs/scaling.md)
DEFAULT_INDEX_KIND = "halfvec"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# Memory of a build (maintenance_work_mem), sized from the rows (build_memory): pgvector keeps the
# graph in memory up to that limit and inserts the rest on disk, about 9x slower a row (1M x
# halfvec(256) with 1 GB: 831k rows in 321 s, the other 169k in 302 s). Per element the graph holds
# the value (VectorType.value_bytes), 2 x m level-0 neighbour slots and GRAPH_ELEMENT_BYTES more
# (pgvector 0.8.0 at m = 16, measured: 1,292 bytes an element of halfvec(256), 1 GiB holding 830,988
# of them; 838 bytes an element of halfvec(16)).
NEIGHBOUR_SLOT_BYTES = 16
GRAPH_ELEMENT_BYTES = 290
BUILD_MEMORY_MARGIN = 1.25
BUILD_MEMORY_MIN_KB = 64 * 1024
SPILL_NOTICE = "hnsw graph no longer fits into maintenance_work_mem"  # pgvector's NOTICE when it spills
REBUILD_FRACTION = 0.1  # a model that lost more than this share of its indexed rows gets a fresh graph
NEXT, OLD = "_next", "_old"  # suffixes of a replacement being built and of the one it replaces
BUILD_LOCK = -1  # advisory lock (model_id, -1) serialises index builds of one model
LOCK_POLL_S = 0.2  # how often a waiting run retries an advisory lock
ROWS_COMMENT = "geoloc rows="  # the index comment (geoloc/sql/search/index_comment.sql): the model's row count


@dataclass(frozen=True)
class VectorType:
    """The SQL type one model's embeddings are cast to, e.g. vector(256) or halfvec(3072)."""

    name: str  # 'vector' or 'halfvec'
    dim: int

    @property
    def ops(self) -> str:
        return f"{self.name}_cosine_ops"

    @property
    def indexable(self) -> bool:
        return self.dim <= (VECTOR_MAX_DIM if self.name == "vector" else HALFVEC_MAX_DIM)

    @property
    def value_bytes(self) -> int:
        """Bytes of one stored value of this type (varlena header and dimension, then the elements)."""
        return 8 + self.dim * (2 if self.name == "halfvec" else 4)

    def text(self) -> str:
        """The type as SQL text, e.g. halfvec(256): a type modifier cannot be a bind parameter, so
        statements have it filled in (geoloc.db.sqlfiles.text(..., vtype=vt.text()))."""
        return f"{self.name}({int(self.dim)})"


def vector_type(dim: int, kind: str | None = None) -> VectorType:
    """KIND(D), KIND defaulting to DEFAULT_INDEX_KIND; halfvec(D) whatever KIND above 2,000
    dimensions (HNSW limits)."""
    dim = int(dim)
    kind = kind or DEFAULT_INDEX_KIND
    if dim <= 0:
        raise ValueError(f"dimension {dim} must be positive")
    if kind not in INDEX_KINDS:
        raise ValueError(f"index type '{kind}' must be one of {', '.join(INDEX_KINDS)}")
    return VectorType(kind if dim <= VECTOR_MAX_DIM else "halfvec", dim)


@dataclass(frozen=True)
class IndexState:
    """The model's HNSW index as the catalog has it, read in one query (read_index)."""

    valid: bool = False  # present and valid
    rows: int | None = None  # the model's row count recorded at its last build or update
    definition: str | None = None  # CREATE INDEX text of a valid index

    def vtype(self, dim: int) -> VectorType | None:
        """The type the valid index casts to (None: no valid index), read from its definition: a query
        must order by that very expression to use it."""
        if self.definition is None:
            return None
        return VectorType("halfvec" if "::halfvec(" in self.definition else "vector", int(dim))


def read_index(conn: Connection | None, model_id: int) -> IndexState:
    """The model's index: valid or not, its recorded rows and definition (geoloc/sql/search/index_state.sql)."""
    with transaction(conn) as conn:
        row = conn.execute(sqlfiles.text("search/index_state.sql"), {"name": index_name(model_id)}).first()
    if row is None:
        return IndexState()
    comment = row.comment or ""
    recorded = comment[len(ROWS_COMMENT):] if comment.startswith(ROWS_COMMENT) else ""
    return IndexState(bool(row.valid), int(recorded) if recorded.isdigit() else None, row.definition)


def indexed_type(conn: Connection | None, model_id: int, dim: int) -> VectorType | None:
    """The type the model's valid index casts to (None: no index)."""
    return read_index(conn, model_id).vtype(dim)


def graph_bytes(rows: int, vt: VectorType, m: int = HNSW_M) -> int:
    """Memory pgvector's build holds for the graph of ROWS values of type VT."""
    return int(rows) * (vt.value_bytes + 2 * int(m) * NEIGHBOUR_SLOT_BYTES + GRAPH_ELEMENT_BYTES)


def build_memory(rows: int, vt: VectorType, m: int = HNSW_M, most_kb: int | None = None) -> str:
    """maintenance_work_mem for a build of ROWS values of type VT: the graph's size with a margin, at
    least BUILD_MEMORY_MIN_KB, at most MOST_KB (default: GEOLOC_INDEX_MEMORY)."""
    most = config.index_memory_kb() if most_kb is None else int(most_kb)
    need = math.ceil(graph_bytes(rows, vt, m) * BUILD_MEMORY_MARGIN / 1024)
    return f"{min(max(need, BUILD_MEMORY_MIN_KB), most)}kB"


def index_name(model_id: int, suffix: str = "") -> str:
    # the prefix tells schema comparisons (geoloc.db.migrate) to ignore these run-time indexes
    return f"{RUNTIME_INDEX_PREFIX}{int(model_id)}{suffix}"


def index_exists(conn: Connection | None, model_id: int) -> bool:
    """Does the model have a usable (valid) HNSW index?"""
    return read_index(conn, model_id).valid


def lost_rows(conn: Connection | None, model_id: int, rows: int) -> bool:
    """With ROWS embeddings now, has the model lost more than REBUILD_FRACTION of the rows its index
    recorded (bulk deletes)?"""
    return _lost(read_index(conn, model_id).rows, rows)


def _lost(recorded: int | None, rows: int) -> bool:
    return recorded is not None and rows < (1 - REBUILD_FRACTION) * recorded


@dataclass
class IndexOutcome:
    name: str | None  # None when the dimension is too large for HNSW
    present: bool  # a valid index exists now
    built: bool  # ... built by this call
    seconds: float
    spilled: str | None = None  # why the build was slow when its graph outgrew the memory it was given


def ensure_index(conn: Connection | None, model_id: int, dim: int, rebuild: bool = False, kind: str | None = None,
                 **build_options) -> IndexOutcome:
    """Make the model's index valid and current: build it when it is missing or invalid, when REBUILD,
    when it is of another type than KIND (default DEFAULT_INDEX_KIND), or when the model lost more
    than REBUILD_FRACTION of the rows it had at the last build; else just record the current row
    count. Leftovers of killed builds and indexes of deleted models are dropped. Waits for another
    build of the same model to finish first.

    The work runs on a dedicated connection of CONN's engine (None: the configured database) outside
    any transaction, so it does not see what CONN's open transaction has not committed."""
    started = time.perf_counter()
    vt = vector_type(dim, kind)
    with _autocommit(conn) as ac:
        _drop_orphans(ac)
        _lock(ac, model_id)
        try:
            _drop_leftovers(ac, model_id)
            if not vt.indexable:
                _drop(ac, index_name(model_id))
                return IndexOutcome(None, False, False, time.perf_counter() - started)
            rows = ac.execute(sqlfiles.text("search/model_rows.sql"), {"model_id": int(model_id)}).scalar_one()
            state = read_index(ac, model_id)
            lost = _lost(state.rows, rows)
            built, spilled = False, None
            if not rows:  # nothing to index: an index of dead rows only would just cost VACUUM
                _drop(ac, index_name(model_id))
            elif rebuild or not state.valid or lost or state.vtype(dim) != vt:
                spilled = _build(ac, model_id, vt, rows, **build_options)
                built = True
            elif state.rows != rows:
                _comment(ac, index_name(model_id), rows)
            if built or state.rows != rows:
                ac.execute(sqlfiles.text("search/analyze_embeddings.sql"))
        finally:
            _unlock(ac, model_id)
    return IndexOutcome(index_name(model_id), bool(rows), built, time.perf_counter() - started, spilled)


def build_index(conn: Connection | None, model_id: int, dim: int, m: int = HNSW_M,
                ef_construction: int = HNSW_EF_CONSTRUCTION, memory: str | None = None,
                kind: str | None = None) -> bool:
    """Build the model's partial HNSW index from scratch and swap it in for the old one (if any).

    The build runs on a dedicated connection of CONN's engine (None: the configured database)
    outside any transaction. Returns False (and drops any old index) when the dimension is too large
    for HNSW. KIND: 'vector' or 'halfvec' (default DEFAULT_INDEX_KIND); MEMORY: maintenance_work_mem
    such as '2GB' (default: build_memory for the model's rows).
    """
    out = ensure_index(conn, model_id, dim, rebuild=True, kind=kind, m=m, ef_construction=ef_construction,
                       memory=memory)
    return out.name is not None


def _build(ac: Connection, model_id: int, vt: VectorType, rows: int, m: int = HNSW_M,
           ef_construction: int = HNSW_EF_CONSTRUCTION, memory: str | None = None) -> str | None:
    """CREATE INDEX CONCURRENTLY under the _next name, then swap it in (the caller holds the lock).
    Returns why the build was slow when its graph outgrew MEMORY (default build_memory), else None."""
    name, new, old = index_name(model_id), index_name(model_id, NEXT), index_name(model_id, OLD)
    memory = memory or build_memory(rows, vt, m)
    ac.execute(sqlfiles.text("search/index_build_settings.sql"), {"memory": str(memory)})
    try:
        with _notices(ac) as notices:
            ac.execute(sqlfiles.text("search/index_build.sql", name=new, vtype=vt.text(), ops=vt.ops, m=int(m),
                                     ef_construction=int(ef_construction), model_id=int(model_id)))
    except BaseException:
        with suppress(Exception):  # tidy up now when we can; the next build drops it otherwise
            _drop(ac, new)
        raise
    ac.execute(sqlfiles.text("search/index_build_reset.sql"))
    _comment(ac, new, rows)
    with ac.engine.begin() as swap:  # both names change at once: there is always one valid index
        swap.execute(sqlfiles.text("search/index_rename.sql", name=name, new_name=old))
        swap.execute(sqlfiles.text("search/index_rename.sql", name=new, new_name=name))
    _drop(ac, old)
    ac.exec_driver_sql("ANALYZE embeddings")
    return _spilled(notices, memory, graph_bytes(rows, vt, m))


@contextmanager
def _notices(ac: Connection) -> Iterator[list[str]]:
    """The NOTICE messages the server sends on AC while the block runs."""
    seen: list[str] = []
    raw = ac.connection.driver_connection

    def keep(diag) -> None:
        seen.append(diag.message_primary or "")

    raw.add_notice_handler(keep)
    try:
        yield seen
    finally:
        raw.remove_notice_handler(keep)


def _spilled(notices: list[str], memory: str, need_bytes: int) -> str | None:
    """One line for a build whose graph outgrew MEMORY (pgvector's SPILL_NOTICE among NOTICES)."""
    for notice in notices:
        if notice.startswith(SPILL_NOTICE):
            after = re.search(r"after (\d+) tuples", notice)
            rows = f" after {int(after[1]):,} rows" if after else ""
            return (f"the HNSW graph outgrew its {memory} of build memory{rows} and the build went on "
                    f"on disk, many times slower: it needs about {math.ceil(need_bytes / 1024 ** 2):,} MB "
                    "(set GEOLOC_INDEX_MEMORY higher where the server has the memory)")
    return None


def _comment(ac: Connection, name: str, rows: int) -> None:
    ac.execute(sqlfiles.text("search/index_comment.sql", name=name, rows=int(rows)))


def _drop(ac: Connection, name: str) -> None:
    ac.execute(sqlfiles.text("search/index_drop.sql", name=name))


def _drop_leftovers(ac: Connection, model_id: int) -> None:
    """What a killed build of this model left behind (the caller holds the model's build lock)."""
    for suffix in (NEXT, OLD):
        _drop(ac, index_name(model_id, suffix))


def _drop_orphans(ac: Connection) -> None:
    """Indexes of models that no longer exist (deleting a model deletes its rows, not its index)."""
    rows = ac.execute(sqlfiles.text("search/orphan_indexes.sql"), {"prefix": RUNTIME_INDEX_PREFIX}).all()
    for row in rows:
        if _try_lock(ac, row.model_id):  # else a build of it is still running: next time
            try:
                _drop(ac, row.name)
            finally:
                _unlock(ac, row.model_id)


def _lock(ac: Connection, model_id: int) -> None:
    """Take the model's build lock, polling: a statement blocked in pg_advisory_lock holds a snapshot,
    and the CREATE INDEX CONCURRENTLY of the run holding the lock would wait for it (a deadlock)."""
    while not _try_lock(ac, model_id):
        time.sleep(LOCK_POLL_S)


def _try_lock(ac: Connection, model_id: int) -> bool:
    return bool(ac.execute(sqlfiles.text("search/build_lock_try.sql"),
                           {"model_id": int(model_id), "lock": BUILD_LOCK}).scalar_one())


def _unlock(ac: Connection, model_id: int) -> None:
    ac.execute(sqlfiles.text("search/build_lock_release.sql"), {"model_id": int(model_id), "lock": BUILD_LOCK})


@contextmanager
def _autocommit(conn: Connection | None) -> Iterator[Connection]:
    """A dedicated connection of CONN's engine (None: the configured database) in autocommit mode
    (CONCURRENTLY cannot run in a transaction). It is closed afterwards rather than pooled, so no
    session setting or advisory lock outlives it. If this process dies, the server notices within a
    second (client_connection_check_interval) and cancels a build still running."""
    engine = conn.engine if conn is not None else check()
    with engine.connect() as ac:
        try:
            ac.execution_options(isolation_level="AUTOCOMMIT")
            if ac.dialect.server_version_info >= (14,):
                ac.exec_driver_sql("SET client_connection_check_interval = '1s'")
            yield ac
        finally:
            ac.invalidate()
