"""Capture months, parsed and written in one place. A month is a `date` on the first day of it.

Two spellings exist: ``YYYY-MM`` (buffer CSVs, panorama lists, the metadata API, which may add a
day: ``YYYY-MM-DD``) and ``Month YYYY`` (the original project's file names and the time-machine
date buttons of the Street View page).
"""

from __future__ import annotations

import re
from datetime import date

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
UNDATED = "Undated"  # month label written when a capture's month is unknown
_ISO = re.compile(r"(\d{4})-(\d{1,2})")
_ISO_DAY = re.compile(r"(\d{4})-(\d{1,2})(?:-\d{1,2})?")


def _first_day(year: int, month: int | None) -> date | None:
    if not month or not 1 <= month <= 12 or year < 1:
        return None
    return date(year, month, 1)


def parse_iso_month(text, allow_day: bool = False) -> date | None:
    """'2021-09' -> 2021-09-01; with ALLOW_DAY also '2021-09-17'. None for anything else."""
    match = (_ISO_DAY if allow_day else _ISO).fullmatch(str(text or "").strip())
    return _first_day(int(match.group(1)), int(match.group(2))) if match else None


def iso_month(month: date | None, missing: str | None = "-") -> str | None:
    """2021-09-01 -> '2021-09'; MISSING when there is no month."""
    return month.strftime("%Y-%m") if month else missing


def parse_month(label: str) -> date | None:
    """'September 2021' -> 2021-09-01; None for 'Undated' or nonsense."""
    parts = str(label or "").strip().split()
    if len(parts) != 2 or not parts[1].isdigit():
        return None
    names = {m.lower(): i for i, m in enumerate(MONTHS, start=1)}
    return _first_day(int(parts[1]), names.get(parts[0].lower()))


def month_label(month: date | None) -> str:
    """2021-09-01 -> 'September 2021'; 'Undated' when there is no month."""
    return f"{MONTHS[month.month - 1]} {month.year}" if month else UNDATED
