"""`geoloc ingest images`: register a folder tree of already captured images in the database.

Files are read once (checksum + full JPEG decode, on a small process pool),
then all rows go in with one COPY in one transaction. Paths are stored relative to the import
root, and the root itself is stored per row, so a file is always ``Path(root) / path``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ..db import sqlfiles
from ..db.engine import begin, check
from ..errors import InputError
from .names import NAME_PATTERN, folder_info, parse_image_name
from .store import ImageRecord, inspect_or_reason, insert_images, mark_queries

# The original dropped (location, heading) groups with too few time-machine images: a group of one
# image is a query with nothing to match in the database (and no positive pair for training).
DEFAULT_MIN_IMAGES = 2
ALREADY_IMPORTED = "already imported"
DEFAULT_VERSION = "v1"


@dataclass
class ImportSummary:
    root: Path
    found: int = 0
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    skips: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    per_split: dict[tuple[str | None, str], int] = field(default_factory=dict)  # imported per (split, version)
    seconds: float = 0.0

    def skip_reasons(self) -> Counter:
        return Counter(reason for _, reason in self.skips)


@dataclass
class _Candidate:
    rel: str
    location_id: int
    heading: int
    time_index: int
    capture_month: object
    scraped_at: object
    split: str | None
    version: str


def image_file(row) -> Path:
    """The file of an images row (a mapping or an object with ``root`` and ``path``)."""
    if isinstance(row, dict):
        return Path(row["root"]) / row["path"]
    return Path(row.root) / row.path


def _walk(root: Path) -> list[PurePosixPath]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        found.extend(base / f for f in sorted(filenames) if not f.startswith("."))
    return found


def _pool() -> ProcessPoolExecutor:
    """Processes, not threads: Pillow's decoder holds the GIL for most of a small JPEG."""
    workers = max(1, min(4, len(os.sched_getaffinity(0))))
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def ingest_images(root: Path, min_images: int = DEFAULT_MIN_IMAGES, strict: bool = False,
                  progress: bool = False, url: str | None = None) -> ImportSummary:
    """Import every image under ROOT; bad files are listed in the summary (or, with STRICT, abort).

    Raises InputError when ROOT is not a folder, or (STRICT) when any file fails; the error then
    carries ``failures`` [(relative path, reason)] and nothing has been stored.
    """
    started = time.perf_counter()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if min_images < 1:
        raise InputError(f"--min-images: {min_images} must be at least 1")
    root = root.resolve()
    summary = ImportSummary(root)

    with check(url).connect() as conn:
        locations = {r.id: r.split for r in conn.execute(sqlfiles.text("images/known_locations.sql"))}
        by_path = {r.path: r.root for r in conn.execute(sqlfiles.text("images/existing_paths.sql"))}
    existing_files = {os.path.join(r, p) for p, r in by_path.items()}
    existing: set[str] = set()  # relative paths (under this root) of files already recorded

    files = _walk(root)
    summary.found = len(files)
    candidates: list[_Candidate] = []
    for rel in files:
        name = parse_image_name(rel.name)
        if name is None:
            summary.failures.append((str(rel), f"file name does not match {NAME_PATTERN}"))
            continue
        other_root = by_path.get(str(rel))
        if other_root is not None and other_root != str(root):
            summary.failures.append((str(rel), f"path already recorded for an image under {other_root}"))
            continue
        if other_root is not None or str(root / rel) in existing_files:
            existing.add(str(rel))
        if name.location_id not in locations:
            summary.failures.append((str(rel), f"unknown location {name.location_id} "
                                               "(import its buffer CSV first: geoloc ingest locations)"))
            continue
        folder = folder_info(root.name, rel)
        split = folder.split if folder else locations[name.location_id]
        version = folder.version if folder else DEFAULT_VERSION
        candidates.append(_Candidate(str(rel), name.location_id, name.heading, name.time_index,
                                     name.capture_month, name.scraped_at, split, version))

    to_read = [c for c in candidates if c.rel not in existing]
    facts = {}
    with _pool() as pool, tqdm(total=len(to_read), desc="reading images", unit="img", file=sys.stderr,
                               disable=not progress) as bar:
        results = pool.map(inspect_or_reason, [root / c.rel for c in to_read], chunksize=128)
        for c, result in zip(to_read, results):
            bar.update()
            if isinstance(result, str):
                summary.failures.append((c.rel, result))
            else:
                facts[c.rel] = result

    good = [c for c in candidates if c.rel in existing or c.rel in facts]
    group_sizes = Counter((c.location_id, c.heading) for c in good)
    records = []
    for c in good:
        size = group_sizes[(c.location_id, c.heading)]
        if size < min_images:
            summary.skips.append((c.rel, f"only {size} image(s) for location {c.location_id} heading "
                                         f"{c.heading}, fewer than --min-images {min_images}"))
        elif c.rel in existing:
            summary.skips.append((c.rel, ALREADY_IMPORTED))
        else:
            f = facts[c.rel]
            records.append(ImageRecord(c.location_id, c.heading, c.time_index, c.capture_month, c.scraped_at,
                                       str(root), c.rel, f.sha256, f.bytes, f.width, f.height, c.split,
                                       c.version, "import"))

    summary.failures.sort()
    summary.failed = len(summary.failures)
    summary.skipped = len(summary.skips)
    if strict and summary.failures:
        err = InputError(
            f"{root}: {summary.failed} of {summary.found} files could not be imported; nothing stored (--strict)",
            hint="fix or remove the files listed above, or run without --strict to skip them")
        err.failures = list(summary.failures)
        raise err

    with begin(url) as conn:
        inserted = insert_images(conn, records)
        mark_queries(conn, (r.location_id for r in inserted))
    per_split: dict = defaultdict(int)
    for r in inserted:
        per_split[(r.split, r.version)] += 1
    summary.per_split = dict(sorted(per_split.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])))
    summary.imported = len(inserted)
    # rows that raced in from elsewhere between reading and inserting count as already imported
    summary.skipped += len(records) - len(inserted)
    summary.seconds = time.perf_counter() - started
    return summary
