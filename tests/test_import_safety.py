"""`geoloc ingest images` never loses good files and never guesses: values beyond a column's range,
hostile files (symlinks, FIFOs, folders named like images, decompression bombs) and folders whose
names give no split/version are refused one by one with their reason, and a kill -9 mid-run costs
nothing but a rerun."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from bad_images import geoloc_command, geoloc_env, jpeg_bomb, png_bomb, run_geoloc
from PIL import Image

from geoloc.collect.locations import ingest_locations
from geoloc.errors import InputError
from geoloc.imagefile import MAX_IMAGE_BYTES
from geoloc.imagery.names import parse_folder
from geoloc.imagery.store import IMAGE_LIMITS, ImageRecord, insert_images

SHARD = Path("Cropped_Test_v1_buffer_75") / "000"
GOOD = ("1835_0_0_March 2023_2024-01-03 19:45:07.253701.jpg",
        "1835_0_1_November 2022_2024-01-03 19:45:14.160463.jpg",
        "1835_0_2_June 2022_2024-01-03 19:45:20.790705.jpg")
HEADING_1 = ("1835_1_0_March 2023_2024-01-03 19:46:19.430110.jpg",
             "1835_1_1_November 2022_2024-01-03 19:46:26.254653.jpg",
             "1835_1_2_June 2022_2024-01-03 19:46:33.005606.jpg")


@pytest.fixture
def test_locations(db_url, shared_data):
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])


def _good_tree(shared_data: Path, folder: Path, names=GOOD) -> Path:
    """Real copies of shared images of location 1835 in FOLDER."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(shared_data / "images" / SHARD / name, folder / name)
    return folder


def _rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT path, location_id, heading, time_index, split, version FROM images ORDER BY path"))]


def _failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and "reading images" not in line]


# --- values beyond the columns' limits ----------------------------------------------------------------------

def _out_of_range_tree(shared_data: Path, root: Path) -> dict[str, str]:
    """Three good images among real copies renamed to values the images table cannot hold.
    Returns {relative path as printed: reason}."""
    _good_tree(shared_data, root / SHARD)
    real = (shared_data / "images" / SHARD / GOOD[0]).read_bytes()
    p = f"{SHARD}/"
    bad = {
        f"{p}1835_40000_0_March 2023_2024-01-03 19:45:07.253701.jpg":
            "heading 40000 is out of range (images.heading is smallint: 0..32767)",
        f"{p}1835_0_70000_March 2023_2024-01-03 19:45:07.253701.jpg":
            "time_index 70000 is out of range (images.time_index is smallint: 0..32767)",
        f"{p}99999999999_0_0_March 2023_2024-01-03 19:45:07.253701.jpg":
            "location_id 99999999999 is out of range (images.location_id is integer: -2147483648..2147483647)",
        "Cropped_Test_v12345678901234567_buffer_75/1835_1_0_March 2023_2024-01-03 19:46:19.430110.jpg":
            "version 'v12345678901234567' is 18 characters long, more than images.version (varchar(16)) holds",
    }
    for rel in bad:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(real)
    # a real JPEG too wide for the smallint width column (and far below the pixel limit)
    Image.new("RGB", (40000, 1), "grey").save(root / SHARD / "1835_3_0_March 2023_2024-01-03 19:47:07.253701.jpg")
    bad[f"{p}1835_3_0_March 2023_2024-01-03 19:47:07.253701.jpg"] = \
        "width 40000 is out of range (images.width is smallint: -32768..32767)"
    # a folder name that is not UTF-8 (text columns cannot hold it)
    odd = os.fsencode(root / SHARD) + b"/\xff\xfe"
    os.mkdir(odd)
    with open(odd + b"/1835_2_0_March 2023_2024-01-03 19:46:07.253701.jpg", "wb") as f:
        f.write(real)
    bad[f"{p}\\xff\\xfe/1835_2_0_March 2023_2024-01-03 19:46:07.253701.jpg"] = \
        "path is not valid UTF-8 text (images.path is text)"
    return bad


def test_values_beyond_the_columns_are_refused_by_name_and_good_rows_stored(cli, engine, shared_data, tmp_path,
                                                                             test_locations):
    root = tmp_path / "tree"
    bad = _out_of_range_tree(shared_data, root)
    res = cli("ingest", "images", root)
    assert res.exit_code == 0, res.output
    assert _failure_lines(res.stderr) == [f"{rel}: {reason}" for rel, reason in sorted(bad.items())]
    assert res.stdout.splitlines()[1] == "  test v1: 3 imported"
    assert res.stdout.startswith(f"9 files under {root.resolve()}: imported 3, skipped 0, failed 6 (")
    assert _rows(engine) == [(f"{SHARD}/{name}", 1835, 0, i, "test", "v1") for i, name in enumerate(GOOD)]

    # --strict still stores nothing when any file is bad
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM images"))
    res = cli("ingest", "images", root, "--strict")
    assert res.exit_code == 1
    assert f"Error: {root.resolve()}: 6 of 9 files could not be imported; nothing stored (--strict)" in res.stderr
    assert _rows(engine) == []


def test_insert_images_refuses_a_row_beyond_its_column_before_sending_anything(engine):
    def record(path: str, heading: int) -> ImageRecord:
        return ImageRecord(1835, heading, 0, None, None, "/r", path, "0" * 64, 100, 224, 224, "test", "v1", "capture")

    with pytest.raises(InputError, match=r"^b.jpg: heading 32768 is out of range \(images.heading is smallint: "
                                         r"0..32767\)$"):
        with engine.begin() as conn:
            insert_images(conn, [record("a.jpg", 1), record("b.jpg", 32768)])
    assert _rows(engine) == []


def test_column_limits_agree_with_the_database(engine):
    """The limits are read from the schema module; the migrated database must have the same types."""
    with engine.connect() as conn:
        cols = {r.column_name: r for r in conn.execute(sa.text(
            "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns "
            "WHERE table_name = 'images'"))}
    integers = {"smallint": 2 ** 15 - 1, "integer": 2 ** 31 - 1, "bigint": 2 ** 63 - 1}
    assert set(cols) == set(IMAGE_LIMITS.columns)
    for name, col in cols.items():
        limit = IMAGE_LIMITS[name]
        if col.data_type in integers:
            assert limit.high == integers[col.data_type], name
        if col.data_type == "character varying":
            assert limit.max_length == col.character_maximum_length, name
    assert (IMAGE_LIMITS["heading"].low, IMAGE_LIMITS["time_index"].low) == (0, 0)
    assert IMAGE_LIMITS["split"].choices == ("train", "val", "test")
    assert IMAGE_LIMITS.unread_checks == ()


# --- hostile files ------------------------------------------------------------------------------------------

def test_symlinks_fifos_image_named_folders_and_bombs_are_refused_without_opening(db_url, engine, shared_data,
                                                                                    tmp_path, test_locations):
    root = tmp_path / "tree"
    shard = _good_tree(shared_data, root / SHARD)
    outside = _good_tree(shared_data, tmp_path / "outside", HEADING_1)
    (shard / HEADING_1[0]).symlink_to(outside / HEADING_1[0])
    (shard / "more").symlink_to(outside, target_is_directory=True)
    os.mkfifo(shard / HEADING_1[1])
    folder = shard / HEADING_1[2]
    folder.mkdir()
    shutil.copy(outside / HEADING_1[2], folder / "1835_1_3_September 2021_2024-01-03 19:46:40.056069.jpg")
    png_bomb(shard / "1835_2_0_March 2023_2024-01-03 19:47:07.253701.jpg", 20000, 20000)
    jpeg_bomb(shard / "1835_2_1_November 2022_2024-01-03 19:47:14.160463.jpg", 8000, 6000)
    with open(shard / "1835_2_2_June 2022_2024-01-03 19:47:20.790705.jpg", "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)  # sparse: costs no disk

    res = run_geoloc("ingest", "images", root)
    assert res.returncode == 0, res.stderr
    p = f"{SHARD}/"
    assert _failure_lines(res.stderr) == [
        f"{p}{HEADING_1[0]}: is a symbolic link, not an image file",
        f"{p}{HEADING_1[1]}: is a FIFO, not an image file",
        f"{p}{HEADING_1[2]}: is a folder, not an image file",
        f"{p}1835_2_0_March 2023_2024-01-03 19:47:07.253701.jpg: image has 400,000,000 pixels, more than the "
        "limit of 40,000,000 (a decompression bomb or a huge image)",
        f"{p}1835_2_1_November 2022_2024-01-03 19:47:14.160463.jpg: image is 8000 x 6000 pixels, more than the "
        "limit of 40,000,000 (a decompression bomb or a huge image)",
        f"{p}1835_2_2_June 2022_2024-01-03 19:47:20.790705.jpg: {MAX_IMAGE_BYTES + 1:,} bytes, more than the limit "
        f"of {MAX_IMAGE_BYTES:,}",
        f"{p}more: is a symbolic link, not an image file",
    ]
    assert res.stdout.startswith(f"10 files under {root.resolve()}: imported 3, skipped 0, failed 7 (")
    assert [r[0] for r in _rows(engine)] == [f"{p}{name}" for name in GOOD]


# --- folder names -------------------------------------------------------------------------------------------

def test_every_folder_name_of_the_original_parses():
    names = {"Cropped_Training_v1_buffer_100": ("train", "v1", 100),
             "Cropped_Training_v2_buffer_100": ("train", "v2", 100),
             "Cropped_Validation_v1_buffer_35": ("val", "v1", 35),
             "Cropped_Validation_v2_buffer_50": ("val", "v2", 50),
             "Cropped_Test_v1_buffer_75": ("test", "v1", 75),
             "Cropped_Test_v2_buffer60": ("test", "v2", 60)}
    for name, want in names.items():
        info = parse_folder(name)
        assert info is not None and (info.split, info.version, info.buffer_m) == want, name


def test_cropped_test_v2_buffer60_is_stored_as_test_v2(cli, engine, shared_data, tmp_path, test_locations):
    root = tmp_path / "images"
    _good_tree(shared_data, root / "Cropped_Test_v2_buffer60" / "000")
    res = cli("ingest", "images", root)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1:] == ["  test v2: 3 imported"]
    assert {r[4:] for r in _rows(engine)} == {("test", "v2")}


def test_unnamed_folders_need_split_and_version_and_the_folder_name_wins(cli, engine, shared_data, tmp_path,
                                                                         test_locations):
    root = tmp_path / "images"
    odd = "Test set two (60 m)"
    _good_tree(shared_data, root / odd, HEADING_1)
    _good_tree(shared_data, root / SHARD)
    reason = (f"folder '{odd}' does not name a split and version (Cropped_<Split>_<version>_buffer_<m>); "
              "pass --split and --version to import its files")
    for options in ((), ("--split", "test")):
        res = cli("ingest", "images", root, *options)
        assert res.exit_code == 0, res.output
        assert _failure_lines(res.stderr) == [f"{odd}/{name}: {reason}" for name in HEADING_1]
        assert res.stdout.startswith(f"6 files under {root.resolve()}: imported 3, skipped 0, failed 3 (")
        assert {r[4:] for r in _rows(engine)} == {("test", "v1")}
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM images"))

    res = cli("ingest", "images", root, "--split", "test", "--version", "v2")
    assert res.exit_code == 0, res.output
    assert _failure_lines(res.stderr) == []
    assert res.stdout.splitlines()[1:] == [
        "  test v1: 3 imported",
        "  test v2: 3 imported",
        f"  folder '{odd}': 3 file(s) took --split test --version v2 (its name gives none)",
        "  folder 'Cropped_Test_v1_buffer_75': its name gives test v1, so --version v2 did not apply",
    ]
    rows = _rows(engine)
    assert {r[0] for r in rows if r[4:] == ("test", "v2")} == {f"{odd}/{name}" for name in HEADING_1}
    assert {r[0] for r in rows if r[4:] == ("test", "v1")} == {f"{SHARD}/{name}" for name in GOOD}


def test_bad_split_and_version_options(cli, db_url, tmp_path):
    res = cli("ingest", "images", tmp_path, "--version", "v12345678901234567")
    assert res.exit_code == 1
    assert res.stderr == ("Error: --version: version 'v12345678901234567' is 18 characters long, more than "
                          "images.version (varchar(16)) holds\n")
    res = cli("ingest", "images", tmp_path, "--version", " ")
    assert res.exit_code == 1 and res.stderr == "Error: --version: version is empty\n"
    res = cli("ingest", "images", tmp_path, "--split", "holdout")
    assert res.exit_code == 2 and "'holdout' is not one of 'train', 'val', 'test'" in res.stderr


# --- kill -9 --------------------------------------------------------------------------------------------------

class _Import:
    """`geoloc ingest images ROOT --min-images 1` in a child process whose stderr is read as it comes."""

    def __init__(self, root: Path):
        self.proc = subprocess.Popen(geoloc_command("ingest", "images", root, "--min-images", "1"),
                                     env=geoloc_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.stderr = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while chunk := self.proc.stderr.read1(4096):
            self.stderr += chunk

    def read_some(self) -> bool:
        """True once the progress bar shows at least one image read."""
        return re.search(rb"reading images: .*\| *[1-9]\d*/\d+", self.stderr) is not None

    def kill(self):
        self.proc.kill()  # SIGKILL to the importing process only, as the OOM killer or kill -9 would
        self.proc.wait()
        self.reader.join()
        assert self.proc.returncode == -signal.SIGKILL, self.stderr.decode(errors="replace")


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def _group_gone(pgid: int) -> bool:
    """No live (non-zombie) process left in the process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True


def _disk_shas(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*.jpg")}


@pytest.mark.slow
def test_kill_9_mid_import_then_rerun_equals_a_clean_import(engine, shared_data, tmp_path):
    ingest_locations([shared_data / "buffers"])
    # a copy of two of the four shared folders (4,869 real images) keeps the three runs short
    folders = {"Cropped_Test_v1_buffer_75": ("test", "v1"), "Cropped_Validation_v1_buffer_35": ("val", "v1")}
    images = tmp_path / "images"
    for name in folders:
        shutil.copytree(shared_data / "images" / name, images / name)
    expected_shas = _disk_shas(images)
    expected_counts: dict = {}
    for rel in expected_shas:
        key = folders[rel.split("/")[0]]
        expected_counts[key] = expected_counts.get(key, 0) + 1

    started = time.monotonic()
    # 1: killed while reading the files; the pool workers go with it
    run = _Import(images)
    _wait_for(run.read_some, "the import to read images")
    run.kill()
    _wait_for(lambda: _group_gone(run.proc.pid), "the import's worker processes to exit", timeout=20)
    assert _rows(engine) == []
    print(f"\nkilled while reading after {time.monotonic() - started:.1f} s")

    # 2: killed while its INSERT into images waits on a lock this test holds
    with engine.connect() as holder:
        holder.execute(sa.text("LOCK TABLE images IN SHARE MODE"))
        run = _Import(images)
        waiting = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' "
                          "AND query LIKE '%INSERT INTO images%'")
        backend = []

        def insert_waits() -> bool:
            with engine.connect() as conn:  # a new transaction each time: pg_stat_activity is a snapshot
                backend.extend(conn.execute(waiting).scalars())
            return bool(backend)

        _wait_for(insert_waits, "the import's INSERT")
        run.kill()
        holder.rollback()

    def backend_ended() -> bool:
        with engine.connect() as conn:
            return not conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                    {"pid": backend[0]}).scalar()

    _wait_for(backend_ended, "the killed import's backend to end")
    assert _rows(engine) == []
    print(f"killed while inserting after {time.monotonic() - started:.1f} s")

    # 3: the rerun stores exactly what a clean import stores
    res = run_geoloc("ingest", "images", images, "--min-images", "1", timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{len(expected_shas)} files under {images.resolve()}: imported "
                                 f"{len(expected_shas)}, skipped 0, failed 0 (")
    with engine.connect() as conn:
        counts = {(r.split, r.version): r.n for r in conn.execute(sa.text(
            "SELECT split, version, count(*) AS n FROM images GROUP BY 1, 2"))}
        paths = conn.execute(sa.text("SELECT count(*), count(DISTINCT path) FROM images")).one()
        shas = dict(conn.execute(sa.text("SELECT path, sha256 FROM images")).all())
    assert counts == expected_counts == {("test", "v1"): 1952, ("val", "v1"): 2917}
    assert paths[0] == paths[1] == len(expected_shas)
    assert shas == expected_shas
