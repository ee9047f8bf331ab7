"""psycopg cursors that speak pgvector: numpy arrays go out as binary `vector` values.

The adapters are registered on the cursor only, never on the pooled connection, so other code that
reads the embeddings column through the same pool keeps PostgreSQL's text form.
"""

from __future__ import annotations

from psycopg import Cursor
from psycopg.types import TypeInfo
from sqlalchemy.engine import Connection

from ..db.engine import psycopg_connection


def vector_cursor(conn: Connection) -> Cursor:
    """A new cursor of CONN's psycopg connection with the pgvector `vector` adapters registered."""
    from pgvector.psycopg.vector import register_vector_info

    raw = psycopg_connection(conn)
    info = TypeInfo.fetch(raw, "vector")  # a lookup only: the connection's adapters stay as they are
    cur = raw.cursor()
    register_vector_info(cur, info)
    return cur
