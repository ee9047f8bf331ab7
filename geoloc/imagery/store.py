"""Writing image rows: COPY into a staging table, then one INSERT ... ON CONFLICT, inside the caller's
transaction, so the importer and the capture workers store all of a batch or nothing.

Every row is checked against the images table's column limits (`IMAGE_LIMITS`, read from the schema
itself) before it reaches the database, so one out-of-range value is that row's reason instead of a
driver error that aborts the whole COPY.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import astuple, dataclass, fields
from datetime import date, datetime
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import psycopg_connection
from ..db.limits import table_limits
from ..db.schema import Image as ImageTable
from ..errors import InputError
from ..imagefile import MAX_IMAGE_BYTES, bomb_error, check_file, check_pixels


@dataclass(frozen=True)
class ImageRecord:
    """One row for the images table (column names and order as in geoloc/sql/images/create_staging.sql)."""

    location_id: int
    heading: int
    time_index: int
    capture_month: date | None
    scraped_at: datetime | None
    root: str
    path: str
    sha256: str
    bytes: int
    width: int
    height: int
    split: str | None
    version: str
    source: str


COLUMNS = tuple(f.name for f in fields(ImageRecord))
IMAGE_LIMITS = table_limits(ImageTable.__table__)


def value_problem(column: str, value) -> str | None:
    """Why VALUE cannot be stored in images.COLUMN (range, length, allowed values, text), or None."""
    return IMAGE_LIMITS[column].problem(value)


def record_problem(rec: ImageRecord) -> str | None:
    """The first reason REC cannot be stored, or None when every value fits its column."""
    for name in COLUMNS:
        problem = value_problem(name, getattr(rec, name))
        if problem:
            return problem
    return None


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    bytes: int
    width: int
    height: int


class BadImage(Exception):
    """A file that is not a complete JPEG; the message is the reason shown to the user."""


def without_name(exc: Exception, name: str) -> str:
    """An imagefile error's message without its leading 'NAME: ' (the caller prints the name itself)."""
    text = str(exc)
    return text[len(name) + 2:] if text.startswith(f"{name}: ") else text


def inspect_jpeg(data: bytes, name: str = "image") -> FileFacts:
    """Checksum and pixel size of a JPEG, after decoding it fully (verify() misses truncation).

    The header's size is checked (`check_pixels`) before any pixel is decoded, so a decompression
    bomb costs nothing.
    """
    if not data:
        raise BadImage("empty file")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            # check_pixels refuses far below Pillow's warning threshold; its warning would only be noise
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as im:
                try:
                    check_pixels(name, *im.size)
                except InputError as exc:
                    raise BadImage(without_name(exc, name)) from None
                if im.format != "JPEG":
                    raise BadImage(f"not a JPEG image ({im.format})")
                im.load()
                width, height = im.size
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised file format)") from None
    except PILImage.DecompressionBombError as exc:
        raise BadImage(without_name(bomb_error(name, exc), name)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"corrupt or truncated JPEG ({exc})") from None
    return FileFacts(digest, len(data), width, height)


def read_regular_file(path: Path) -> bytes:
    """The bytes of PATH, which must be a regular file within MAX_IMAGE_BYTES (`check_file`).

    The file is opened without following a symlink and without blocking, and checked again on the
    open descriptor, so a file swapped for a symlink or a FIFO after the check is refused, never
    followed or waited on.
    """
    check_file(path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BadImage("is no longer a regular file (changed while being read)")
        data = f.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage(f"more than the limit of {MAX_IMAGE_BYTES:,} bytes (grew while being read)")
    return data


def inspect_file(path: Path) -> FileFacts:
    return inspect_jpeg(read_regular_file(path), name=str(path))


def inspect_or_reason(path: Path) -> FileFacts | str:
    """inspect_file for a process pool: the facts, or the reason the file is unusable."""
    try:
        return inspect_file(path)
    except BadImage as exc:
        return str(exc)
    except InputError as exc:
        return without_name(exc, str(path))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def insert_images(conn: Connection, records: list[ImageRecord]) -> list:
    """Insert RECORDS (existing paths are left alone); returns (location_id, split, version) of new rows.

    InputError, before anything is sent, when a record does not fit the images table.
    """
    if not records:
        return []
    for rec in records:
        problem = record_problem(rec)
        if problem:
            raise InputError(f"{rec.path}: {problem}")
    conn.execute(sqlfiles.text("images/create_staging.sql"))
    raw = psycopg_connection(conn)
    with raw.cursor() as cur:
        with cur.copy(f"COPY image_staging ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for rec in records:
                copy.write_row(astuple(rec))
    inserted = conn.execute(sqlfiles.text("images/insert_from_staging.sql")).all()
    conn.execute(sqlfiles.text("images/drop_staging.sql"))  # several batches may share one transaction
    return inserted


def mark_queries(conn: Connection, location_ids) -> None:
    """Recompute is_query (newest image per location and heading) for these locations."""
    ids = sorted(set(location_ids))
    if ids:
        conn.execute(sqlfiles.text("images/mark_queries.sql"), {"location_ids": ids})
