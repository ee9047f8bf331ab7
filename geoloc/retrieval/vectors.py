"""pgvector values in statements: numpy arrays bound as `vector` parameters (vector_param), `vector`
columns read back as lists of floats (with_vector_columns), and psycopg cursors for the binary COPY
that stores embeddings (vector_cursor).

Bind parameters use pgvector's SQLAlchemy types (text form, per statement): nothing is registered on
the pooled connections, so other code reading the embeddings column keeps PostgreSQL's text form.
"""

from __future__ import annotations

import sqlalchemy as sa
from psycopg import Cursor
from psycopg.types import TypeInfo
from sqlalchemy.engine import Connection

from ..db.engine import psycopg_connection


def vector_param(name: str) -> sa.BindParameter:
    """The bind parameter NAME of a statement as a pgvector `vector` (a numpy array or list goes in):
    `sqlfiles.text(...).bindparams(vector_param("query"))`."""
    from pgvector.sqlalchemy import VECTOR

    return sa.bindparam(name, type_=VECTOR())


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
