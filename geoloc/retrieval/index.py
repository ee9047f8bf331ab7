"""Per-model HNSW indexes on the shared embeddings table.

All models share one ``embeddings`` column of type ``vector`` without a dimension, which no index can
take. Each model therefore gets a *partial* index (``WHERE model_id = N``) on an expression that casts
to its dimension, ``(embedding::vector(D))``. A query uses that index only when its ORDER BY is the very
same expression (``embedding::vector(D) <=> q``) and its WHERE implies ``model_id = N``; `vector_type`
is the one place that writes the expression, so the index and every query agree.

pgvector's HNSW takes ``vector`` up to 2,000 dimensions and ``halfvec`` up to 4,000: larger models are
indexed as halfvec (half the memory, a negligible loss of precision for cosine on unit vectors), and
models beyond 4,000 dimensions get no index (searched exactly). Cosine distance (``<=>``,
``*_cosine_ops``) on the L2-normalised embeddings ranks exactly like inner product and Euclidean.

Operations notes (pgvector 0.8.0, as installed):
- Builds run single-process (``max_parallel_maintenance_workers = 0``): parallel HNSW builds can
  overflow in pgvector < 0.8.2.
- After deleting many rows of a model (re-embedding, deleting images) run ``REINDEX INDEX
  embeddings_hnsw_<id>`` (or `build_index` again): VACUUM on HNSW indexes with many dead tuples is
  slow and may leave the graph poorly connected before 0.8.2.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql
from sqlalchemy.engine import Connection

from ..db.engine import psycopg_connection
from ..db.migrate import RUNTIME_INDEX_PREFIX

VECTOR_MAX_DIM = 2000  # pgvector: HNSW on vector
HALFVEC_MAX_DIM = 4000  # pgvector: HNSW on halfvec
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
BUILD_MEMORY = "1GB"  # the graph of ~1M x 256 fits; a build that spills to disk is many times slower


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

    def sql(self) -> sql.Composable:
        """The type as SQL text: a type modifier cannot be a bind parameter, so it is composed in."""
        return sql.SQL("{}({})").format(sql.SQL(self.name), sql.Literal(int(self.dim)))

    def text(self) -> str:
        return f"{self.name}({int(self.dim)})"


def vector_type(dim: int) -> VectorType:
    """vector(D) up to 2,000 dimensions, halfvec(D) above (HNSW limits)."""
    dim = int(dim)
    if dim <= 0:
        raise ValueError(f"dimension {dim} must be positive")
    return VectorType("vector" if dim <= VECTOR_MAX_DIM else "halfvec", dim)


def index_name(model_id: int) -> str:
    # the prefix tells schema comparisons (geoloc.db.migrate) to ignore these run-time indexes
    return f"{RUNTIME_INDEX_PREFIX}{int(model_id)}"


def index_exists(conn: Connection, model_id: int) -> bool:
    with psycopg_connection(conn).cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (index_name(model_id),))
        return bool(cur.fetchone()[0])


def drop_index(conn: Connection, model_id: int) -> None:
    with psycopg_connection(conn).cursor() as cur:
        cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index_name(model_id))))


def build_index(conn: Connection, model_id: int, dim: int, m: int = HNSW_M,
                ef_construction: int = HNSW_EF_CONSTRUCTION, memory: str = BUILD_MEMORY) -> bool:
    """(Re)build the model's partial HNSW index inside the caller's transaction.

    Returns False (and drops any old index) when the dimension is too large for HNSW. Rebuilding from
    scratch after a bulk load is faster than inserting into a live graph, and leaves no dead tuples.
    """
    vt = vector_type(dim)
    drop_index(conn, model_id)
    if not vt.indexable:
        return False
    stmt = sql.SQL(
        "CREATE INDEX {name} ON embeddings USING hnsw ((embedding::{vtype}) {ops}) "
        "WITH (m = {m}, ef_construction = {ef}) WHERE model_id = {model_id}"
    ).format(name=sql.Identifier(index_name(model_id)), vtype=vt.sql(), ops=sql.SQL(vt.ops),
             m=sql.Literal(int(m)), ef=sql.Literal(int(ef_construction)), model_id=sql.Literal(int(model_id)))
    with psycopg_connection(conn).cursor() as cur:
        cur.execute("SET LOCAL max_parallel_maintenance_workers = 0")  # pgvector < 0.8.2 overflow
        cur.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(memory)))
        cur.execute(stmt)
        cur.execute("ANALYZE embeddings")
    return True
