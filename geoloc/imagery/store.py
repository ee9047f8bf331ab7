"""Writing image rows: COPY into a staging table, then one INSERT ... ON CONFLICT, inside the caller's
transaction, so the importer and the capture workers store all of a batch or nothing."""

from __future__ import annotations

import hashlib
import io
from dataclasses import astuple, dataclass, fields
from datetime import date, datetime
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy.engine import Connection

from ..db import sqlfiles
from ..db.engine import psycopg_connection


@dataclass(frozen=True)
class ImageRecord:
    """One row for the images table (column names and order as in sql/images/create_staging.sql)."""

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


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    bytes: int
    width: int
    height: int


class BadImage(Exception):
    """A file that is not a complete JPEG; the message is the reason shown to the user."""


def inspect_jpeg(data: bytes) -> FileFacts:
    """Checksum and pixel size of a JPEG, after decoding it fully (verify() misses truncation)."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise BadImage(f"not a JPEG image ({im.format})")
            im.load()
            width, height = im.size
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised file format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"corrupt or truncated JPEG ({exc})") from None
    return FileFacts(digest, len(data), width, height)


def inspect_file(path: Path) -> FileFacts:
    return inspect_jpeg(Path(path).read_bytes())


def inspect_or_reason(path: Path) -> FileFacts | str:
    """inspect_file for a process pool: the facts, or the reason the file is unusable."""
    try:
        return inspect_file(path)
    except BadImage as exc:
        return str(exc)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def insert_images(conn: Connection, records: list[ImageRecord]) -> list:
    """Insert RECORDS (existing paths are left alone); returns (location_id, split, version) of new rows."""
    if not records:
        return []
    conn.execute(sqlfiles.text("images/create_staging.sql"))
    raw = psycopg_connection(conn)
    with raw.cursor() as cur:
        with cur.copy(f"COPY image_staging ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for rec in records:
                copy.write_row(astuple(rec))
    inserted = conn.execute(sqlfiles.text("images/insert_from_staging.sql")).all()
    conn.exec_driver_sql("DROP TABLE image_staging")  # several batches may share one transaction
    return inserted


def mark_queries(conn: Connection, location_ids) -> None:
    """Recompute is_query (newest image per location and heading) for these locations."""
    ids = sorted(set(location_ids))
    if ids:
        conn.execute(sqlfiles.text("images/mark_queries.sql"), {"location_ids": ids})
