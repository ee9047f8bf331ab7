"""What each column of a table can hold, read from the SQLAlchemy schema (geoloc.db.schema).

Integer ranges come from the column types, lengths from String(n), lower bounds and allowed values
from simple CHECK constraints ("col >= N", "col IN ('a','b')"). Code that writes rows checks them
here first, so a value that does not fit is reported as that row's reason instead of a driver error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, SmallInteger, String, Table

INTEGER_BITS = ((BigInteger, "bigint", 64), (SmallInteger, "smallint", 16), (Integer, "integer", 32))
_AT_LEAST = re.compile(r"^\s*(\w+)\s*>=\s*(-?\d+)\s*$")
_ONE_OF = re.compile(r"^\s*(\w+)\s+IN\s*\((.*)\)\s*$", re.IGNORECASE)
_QUOTED = re.compile(r"'([^']*)'")


@dataclass(frozen=True)
class ColumnLimit:
    """The values one column accepts; ``problem(value)`` says why a value does not fit, or None."""

    table: str
    column: str
    type_name: str
    nullable: bool = True
    low: int | None = None
    high: int | None = None
    max_length: int | None = None
    choices: tuple[str, ...] | None = None

    def problem(self, value) -> str | None:
        where = f"{self.table}.{self.column} is {self.type_name}"
        if value is None:
            return None if self.nullable else f"{self.column} is missing ({where}, NOT NULL)"
        if self.low is not None or self.high is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{self.column} {value!r} is not a whole number ({where})"
            if not self.low <= value <= self.high:
                return f"{self.column} {value} is out of range ({where}: {self.low}..{self.high})"
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"{self.column} is not valid UTF-8 text ({where})"
            if "\x00" in value:
                return f"{self.column} contains a NUL character ({where})"
            if self.max_length is not None and len(value) > self.max_length:
                return (f"{self.column} '{value}' is {len(value)} characters long, more than "
                        f"{self.table}.{self.column} ({self.type_name}) holds")
            if self.choices is not None and value not in self.choices:
                return f"{self.column} '{value}' is not one of {', '.join(self.choices)} ({self.table}.{self.column})"
        return None


@dataclass(frozen=True)
class TableLimits:
    columns: dict[str, ColumnLimit]
    unread_checks: tuple[str, ...]  # CHECK constraints too complex to read here (the database still enforces them)

    def __getitem__(self, column: str) -> ColumnLimit:
        return self.columns[column]


def _type_limits(sqltype) -> dict:
    for cls, name, bits in INTEGER_BITS:
        if isinstance(sqltype, cls):
            return {"type_name": name, "low": -(2 ** (bits - 1)), "high": 2 ** (bits - 1) - 1}
    if isinstance(sqltype, String):
        if sqltype.length:
            return {"type_name": f"varchar({sqltype.length})", "max_length": sqltype.length}
        return {"type_name": "text"}
    return {"type_name": str(sqltype).lower()}


def table_limits(table: Table) -> TableLimits:
    """The ColumnLimit of every column of TABLE."""
    found = {c.name: {"table": table.name, "column": c.name, "nullable": c.nullable, **_type_limits(c.type)}
             for c in table.columns}
    unread = []
    for constraint in table.constraints:
        sqltext = getattr(constraint, "sqltext", None)
        if sqltext is None:
            continue
        text = str(sqltext)
        at_least, one_of = _AT_LEAST.match(text), _ONE_OF.match(text)
        if at_least and at_least[1] in found and "low" in found[at_least[1]]:
            found[at_least[1]]["low"] = max(found[at_least[1]]["low"], int(at_least[2]))
        elif one_of and one_of[1] in found:
            found[one_of[1]]["choices"] = tuple(_QUOTED.findall(one_of[2]))
        else:
            unread.append(text)
    return TableLimits({name: ColumnLimit(**kw) for name, kw in found.items()}, tuple(unread))
