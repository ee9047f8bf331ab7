"""Loads the SQL kept in the repository's sql/ folder, so analysts and the code run the same text."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"


@lru_cache(maxsize=None)
def read(name: str) -> str:
    """The text of sql/NAME (NAME may include a subfolder, e.g. 'views/locations.sql')."""
    return (SQL_DIR / name).read_text()


def text(name: str) -> sa.TextClause:
    """sql/NAME as a SQLAlchemy statement with :named bind parameters."""
    return sa.text(read(name))
