"""pgvector values in statements: numpy arrays bound as `vector` parameters, `vector` columns read
back as lists of floats, and psycopg cursors for the binary COPY that stores embeddings.

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


def vector_column(name: str) -> sa.ColumnClause:
    """The result column NAME as a pgvector `vector`, read as a list of floats:
    `sqlfiles.text(...).columns(vector_column("embedding"))`."""
    from pgvector.sqlalchemy import VECTOR

    return sa.column(name, VECTOR())


def vector_cursor(conn: Connection) -> Cursor:
    """A new cursor of CONN's psycopg connection with the pgvector `vector` adapters registered
    (for COPY ... FORMAT BINARY; statements bind vectors with vector_param)."""
    from pgvector.psycopg.vector import register_vector_info

    raw = psycopg_connection(conn)
    info = TypeInfo.fetch(raw, "vector")  # a lookup only: the connection's adapters stay as they are
    cur = raw.cursor()
    register_vector_info(cur, info)
    return cur
