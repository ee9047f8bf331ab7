"""pgvector values in statements: numpy arrays bound as `vector` parameters (vector_param, sent in
pgvector's binary form), `vector` columns read back as lists of floats (with_vector_columns), and
psycopg cursors for the binary COPY that stores embeddings (vector_cursor).

Only a dumper, for pgvector's own `Vector` class, is added to a connection (`bind_vectors`, once per
connection): what its queries read back is untouched, so other code reading the embeddings column
through the same pool keeps PostgreSQL's text form.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa
from psycopg import Cursor, ProgrammingError
from psycopg.adapt import PyFormat
from psycopg.types import TypeInfo
from sqlalchemy.engine import Connection
from sqlalchemy.types import UserDefinedType

from ..db.engine import psycopg_connection

HALFVEC_MAX = 65504.0  # the largest value the embeddings column (halfvec, 16-bit floats) holds


class BinaryVector(UserDefinedType):
    """A bind parameter of type `vector`: a numpy array or list of floats goes out as pgvector's
    `Vector`, which the dumper `bind_vectors` adds sends in binary (no text formatting of floats)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "vector"

    def bind_processor(self, dialect):
        from pgvector import Vector

        def process(value):
            return value if value is None or isinstance(value, Vector) else Vector(np.asarray(value, np.float32))
        return process


def vector_param(name: str) -> sa.BindParameter:
    """The bind parameter NAME of a statement as a `vector` (call bind_vectors on the connection
    first): `sqlfiles.text(...).bindparams(vector_param("query"))`."""
    return sa.bindparam(name, type_=BinaryVector())


def bind_vectors(conn: Connection) -> None:
    """Let CONN's psycopg connection send vector_param values (pgvector's binary `vector` dumper, with
    this database's type oid); a no-op once done for that connection."""
    from pgvector import Vector
    from pgvector.psycopg.vector import VectorBinaryDumper

    raw = psycopg_connection(conn)
    try:
        raw.adapters.get_dumper(Vector, PyFormat.BINARY)
        return
    except ProgrammingError:  # not registered yet on this connection
        pass
    info = TypeInfo.fetch(raw, "vector")
    if info is None:
        raise ProgrammingError("the vector type is not installed in this database")
    raw.adapters.register_dumper(Vector, type("VectorDumper", (VectorBinaryDumper,), {"oid": info.oid}))


def with_vector_columns(statement: sa.TextClause, *names: str) -> sa.TextualSelect:
    """STATEMENT with its result columns NAMES read as pgvector `vector`s (lists of floats), e.g.
    `with_vector_columns(sqlfiles.text(...), "embedding")`; the other columns are read as they come."""
    from pgvector.sqlalchemy import VECTOR

    return statement.columns(**{name: VECTOR() for name in names})


def vector_cursor(conn: Connection) -> Cursor:
    """A new cursor of CONN's psycopg connection with the pgvector `vector` adapters registered
    (for COPY ... FORMAT BINARY; statements bind vectors with vector_param)."""
    from pgvector.psycopg.vector import register_vector_info

    raw = psycopg_connection(conn)
    info = TypeInfo.fetch(raw, "vector")  # a lookup only: the connection's adapters stay as they are
    cur = raw.cursor()
    register_vector_info(cur, info)
    return cur
