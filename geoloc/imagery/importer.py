"""`geoloc ingest images`: register a folder tree of already captured images in the database.

Files are read once (checksum + full JPEG decode, on a small process pool), then all rows go in with
one COPY in one transaction, so a killed import stores nothing and a rerun stores everything. Paths
are stored relative to the import root, and the root itself is stored per row, so a file is always
``Path(root) / path``.

Nothing is guessed: split and version come from the nearest ``Cropped_<Split>_<version>_buffer_<m>``
folder, or from the caller's ``split``/``version`` for files in folders that name neither (a folder's
own name wins over them). Symlinks, FIFOs and folders named like images are never followed or opened,
and every row is checked against the column limits before it reaches the database; each bad file is
reported with its reason and the good ones are stored.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
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
from ..imagefile import IMAGE_SUFFIXES, check_file
from ..splits import SPLITS
from .names import FOLDER_PATTERN, NAME_PATTERN, ImageName, folder_info, parse_image_name
from .store import (ImageRecord, inspect_or_reason, insert_images, mark_queries, record_problem, value_problem,
                    without_name)

# The original dropped (location, heading) groups with too few time-machine images: a group of one
# image is a query with nothing to match in the database (and no positive pair for training).
DEFAULT_MIN_IMAGES = 2
ALREADY_IMPORTED = "already imported"


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
    # folders whose name gives no split/version: files that took them from the options, per folder
    fallback_folders: dict[str, int] = field(default_factory=dict)
    # folders whose name gives a split/version other than the options: the name won (folder -> note)
    option_conflicts: dict[str, str] = field(default_factory=dict)
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


def shown(rel: str) -> str:
    """A relative path as printed: bytes of names that are not UTF-8 as \\xNN escapes."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _walk(root: Path, failures: list) -> list[PurePosixPath]:
    """Every non-hidden entry under ROOT that is not a folder to descend into, sorted.

    Symlinks (to files or folders), FIFOs and other special files are listed so they can be refused
    with their reason; folders named like images are listed instead of entered. Nothing is followed.
    """
    found: list[PurePosixPath] = []
    pending = [PurePosixPath()]
    while pending:
        rel_dir = pending.pop()
        try:
            with os.scandir(root / rel_dir) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            failures.append((shown(str(rel_dir)), f"folder cannot be read ({exc.strerror or exc})"))
            continue
        subdirs = []
        for entry in entries:
            rel = rel_dir / entry.name
            if entry.is_dir(follow_symlinks=False) and not entry.name.lower().endswith(IMAGE_SUFFIXES):
                subdirs.append(rel)
            else:
                found.append(rel)
        pending.extend(reversed(subdirs))
    return sorted(found)


def _no_orphans() -> None:
    """Pool worker start-up: die with the importing process (kill -9 included) instead of lingering."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _pool() -> ProcessPoolExecutor:
    """Processes, not threads: Pillow's decoder holds the GIL for most of a small JPEG."""
    workers = max(1, min(4, len(os.sched_getaffinity(0))))
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_no_orphans)


def _check_options(split: str | None, version: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise InputError(f"--split: '{split}' is not one of {', '.join(SPLITS)}")
    if version is not None:
        problem = value_problem("version", version) or ("" if version.strip() else "version is empty")
        if problem:
            raise InputError(f"--version: {problem}")


def _name_problem(name: ImageName | None, root: Path, rel: PurePosixPath) -> str | None:
    """Why a file's name (or path) cannot become an images row, before the file is read."""
    if name is None:
        return f"file name does not match {NAME_PATTERN}"
    values = (("location_id", name.location_id), ("heading", name.heading), ("time_index", name.time_index),
              ("root", str(root)), ("path", str(rel)))
    return next(filter(None, (value_problem(column, value) for column, value in values)), None)


def _split_version(root: Path, rel: PurePosixPath, split: str | None, version: str | None,
                   conflicts: dict[str, str], fallbacks: Counter) -> tuple[str, str] | str:
    """(split, version) of a file: from its nearest Cropped_* folder, else from the options; otherwise
    the reason it cannot be imported. Notes options a folder's name overrides in CONFLICTS and counts
    files that took the options per folder in FALLBACKS."""
    folder = folder_info(root.name, rel)
    if folder is not None:
        ignored = [f"--{option} {given}" for option, given, named in (("split", split, folder.split),
                                                                       ("version", version, folder.version))
                   if given is not None and given != named]
        if ignored:
            conflicts[folder.name] = (f"its name gives {folder.split} {folder.version}, "
                                      f"so {' and '.join(ignored)} did not apply")
        return folder.split, folder.version
    label = shown(str(rel.parent)) if rel.parent != PurePosixPath() else root.name
    if split is None or version is None:
        return (f"folder '{label}' does not name a split and version ({FOLDER_PATTERN}); "
                "pass --split and --version to import its files")
    fallbacks[label] += 1
    return split, version


def ingest_images(root: Path, min_images: int = DEFAULT_MIN_IMAGES, strict: bool = False,
                  progress: bool = False, split: str | None = None,
                  version: str | None = None) -> ImportSummary:
    """Import every image under ROOT; bad files are listed in the summary (or, with STRICT, abort).

    SPLIT and VERSION apply to files with no ``Cropped_<Split>_<version>_buffer_<m>`` folder above
    them; such files are refused when they are not given, never stored under a guess.
    Raises InputError when ROOT is not a folder, or (STRICT) when any file fails; the error then
    carries ``failures`` [(relative path, reason)] and nothing has been stored.
    """
    started = time.perf_counter()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if min_images < 1:
        raise InputError(f"--min-images: {min_images} must be at least 1")
    _check_options(split, version)
    root = root.resolve()
    summary = ImportSummary(root)

    with check().connect() as conn:
        locations = {r.id: r.split for r in conn.execute(sqlfiles.text("images/known_locations.sql"))}
        by_path = {r.path: r.root for r in conn.execute(sqlfiles.text("images/existing_paths.sql"))}
    existing_files = {os.path.join(r, p) for p, r in by_path.items()}
    existing: set[str] = set()  # relative paths (under this root) of files already recorded

    files = _walk(root, summary.failures)
    summary.found = len(files)
    fallback_folders: Counter = Counter()
    candidates: list[_Candidate] = []
    for rel in files:
        try:
            check_file(root / rel)
        except InputError as exc:
            summary.failures.append((shown(str(rel)), without_name(exc, str(root / rel))))
            continue
        name = parse_image_name(rel.name)
        problem = _name_problem(name, root, rel)
        other_root = by_path.get(str(rel))
        if problem is None and other_root is not None and other_root != str(root):
            problem = f"path already recorded for an image under {other_root}"
        if problem is None and name.location_id not in locations:
            problem = f"unknown location {name.location_id} (import its buffer CSV first: geoloc ingest locations)"
        if problem is None and (other_root is not None or str(root / rel) in existing_files):
            existing.add(str(rel))
            decided = (None, "")  # stored before: its split and version are already decided
        elif problem is None:
            decided = _split_version(root, rel, split, version, summary.option_conflicts, fallback_folders)
            if isinstance(decided, str):
                problem = decided
        if problem:
            summary.failures.append((shown(str(rel)), problem))
            continue
        candidates.append(_Candidate(str(rel), name.location_id, name.heading, name.time_index,
                                     name.capture_month, name.scraped_at, *decided))
    summary.fallback_folders = dict(sorted(fallback_folders.items()))

    to_read = [c for c in candidates if c.rel not in existing]
    records: dict[str, ImageRecord] = {}
    with _pool() as pool, tqdm(total=len(to_read), desc="reading images", unit="img", file=sys.stderr,
                               disable=not progress) as bar:
        results = pool.map(inspect_or_reason, [root / c.rel for c in to_read], chunksize=128)
        for c, result in zip(to_read, results):
            bar.update()
            if isinstance(result, str):
                summary.failures.append((shown(c.rel), result))
                continue
            rec = ImageRecord(c.location_id, c.heading, c.time_index, c.capture_month, c.scraped_at,
                              str(root), c.rel, result.sha256, result.bytes, result.width, result.height,
                              c.split, c.version, "import")
            problem = record_problem(rec)
            if problem:
                summary.failures.append((shown(c.rel), problem))
            else:
                records[c.rel] = rec

    good = [c for c in candidates if c.rel in existing or c.rel in records]
    group_sizes = Counter((c.location_id, c.heading) for c in good)
    to_insert = []
    for c in good:
        size = group_sizes[(c.location_id, c.heading)]
        if size < min_images:
            summary.skips.append((shown(c.rel), f"only {size} image(s) for location {c.location_id} heading "
                                                f"{c.heading}, fewer than --min-images {min_images}"))
        elif c.rel in existing:
            summary.skips.append((shown(c.rel), ALREADY_IMPORTED))
        else:
            to_insert.append(records[c.rel])

    summary.failures.sort()
    summary.failed = len(summary.failures)
    summary.skipped = len(summary.skips)
    if strict and summary.failures:
        err = InputError(
            f"{root}: {summary.failed} of {summary.found} files could not be imported; nothing stored (--strict)",
            hint="fix or remove the files listed above, or run without --strict to skip them")
        err.failures = list(summary.failures)
        raise err

    with begin() as conn:
        inserted = insert_images(conn, to_insert)
        mark_queries(conn, (r.location_id for r in inserted))
    per_split: dict = defaultdict(int)
    for r in inserted:
        per_split[(r.split, r.version)] += 1
    summary.per_split = dict(sorted(per_split.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])))
    summary.imported = len(inserted)
    # rows that raced in from elsewhere between reading and inserting count as already imported
    summary.skipped += len(to_insert) - len(inserted)
    summary.seconds = time.perf_counter() - started
    return summary
