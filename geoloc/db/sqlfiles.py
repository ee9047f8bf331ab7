"""Loads the SQL kept in the package's sql/ folder (geoloc/sql/), so analysts and the code run the same text.

Values are always bound (`:name`). The only text ever put into a statement is an identifier-like
word the code chose from a closed set, e.g. the vector type ``halfvec(256)`` of a model's index (a
type modifier cannot be a bind parameter): `source` fills such ``{placeholder}``s and refuses
anything else.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"  # geoloc/sql, shipped in the wheel
# what a placeholder may be filled with: a word, optionally with an integer type modifier
# (vector(256)), or a whole number (a storage parameter of CREATE INDEX)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\([0-9]+\))?|[0-9]+")


@lru_cache(maxsize=None)
def read(name: str) -> str:
    """The text of geoloc/sql/NAME (NAME may include a subfolder, e.g. 'views/locations.sql')."""
    return (SQL_DIR / name).read_text()


def source(name: str, /, **identifiers: str | int) -> str:
    """geoloc/sql/NAME with its {placeholders} filled by IDENTIFIERS (see `fill`)."""
    return fill(read(name), **identifiers)


def fill(template: str, /, **identifiers: str | int) -> str:
    """TEMPLATE with each {KEY} replaced by its value: an int, or a string IDENTIFIER matches;
    ValueError for anything else (a user's value is bound, never filled in) or a KEY not in it."""
    for key, value in identifiers.items():
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
            raise ValueError(f"{{{key}}} must be an identifier such as vector(256) or a number, not {value!r}")
        if "{" + key + "}" not in template:
            raise ValueError(f"no placeholder {{{key}}} to fill")
        template = template.replace("{" + key + "}", value)
    return template


def text(name: str, /, **identifiers: str | int) -> sa.TextClause:
    """geoloc/sql/NAME as a SQLAlchemy statement with :named bind parameters ({placeholders}: see `source`)."""
    return sa.text(source(name, **identifiers))
