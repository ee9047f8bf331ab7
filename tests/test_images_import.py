"""`geoloc ingest images`: the real shared tree imports completely, re-import is a no-op, bad files are
skipped with their reason (or, with --strict, abort with nothing stored)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from geoloc.collect.locations import ingest_locations
from geoloc.errors import InputError
from geoloc.imagefile import image_file
from geoloc.imagery.importer import ingest_images

EXPECTED = {("test", "v1"): 1952, ("train", "v1"): 6576, ("train", "v2"): 4649, ("val", "v1"): 2917}
NAME_ERROR = "file name does not match <location>_<heading>_<time>_<Month YYYY>_<scraped at>.jpg"


def _stderr_lines(res) -> list[str]:
    """stderr without the progress bar."""
    return [line for line in res.stderr.splitlines() if line.strip() and "reading images" not in line]


def _count(engine, where: str = "true") -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM images WHERE {where}")).scalar()


@pytest.mark.slow  # reads and decodes all 16,094 files twice
def test_full_shared_tree_imports_completely_and_reimport_adds_nothing(cli, engine, shared_data):
    ingest_locations([shared_data / "buffers"])
    images = shared_data / "images"

    res = cli("ingest", "images", images)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    # the default --min-images 2 drops the five single-image (location, heading) groups, as the original
    assert lines[0].startswith(f"16094 files under {images.resolve()}: imported 16089, skipped 5, failed 0 (")
    assert "  skipped 1: only 1 image(s) for location 421 heading 2, fewer than --min-images 2" in lines
    assert _stderr_lines(res) == []

    res = cli("ingest", "images", images, "--min-images", "1")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"16094 files under {images.resolve()}: imported 5, skipped 16089, failed 0 (")

    with engine.connect() as conn:
        per_split = {(r.split, r.version): r.images for r in conn.execute(sa.text(
            "SELECT split, version, count(*) AS images FROM images GROUP BY 1, 2"))}
        per_locations = dict(conn.execute(sa.text(
            "SELECT split || ' ' || version, count(DISTINCT location_id) FROM images GROUP BY 1")).all())
        queries = conn.execute(sa.text(
            "SELECT count(*) FILTER (WHERE is_query), count(DISTINCT (location_id, heading)), "
            "bool_and(NOT is_query OR time_index = (SELECT min(time_index) FROM images j "
            "  WHERE j.location_id = i.location_id AND j.heading = i.heading)) FROM images i")).one()
        row = conn.execute(sa.text(
            "SELECT * FROM images WHERE path LIKE '%1835_0_3_September 2021_2024-01-03 19:45:27.106051.jpg'")).one()
        view = conn.execute(sa.text("SELECT count(*), count(DISTINCT id), count(geom) FROM v_images")).one()
    print("per split/version:", per_split, "locations:", per_locations)
    assert per_split == EXPECTED and sum(per_split.values()) == 16094
    assert per_locations == {"train v1": 231, "train v2": 187, "test v1": 77, "val v1": 113}
    assert queries[0] == queries[1] and queries[2]
    assert (row.location_id, row.heading, row.time_index, str(row.capture_month)) == (1835, 0, 3, "2021-09-01")
    assert str(row.scraped_at) == "2024-01-03 19:45:27.106051"
    assert row.root == str(images.resolve()) and not row.path.startswith("/")
    assert (row.width, row.height, row.split, row.version, row.source) == (224, 224, "test", "v1", "import")
    source = next(images.rglob("1835_0_3_September 2021_2024-01-03 19:45:27.106051.jpg"))
    assert image_file(row) == source.resolve() and row.bytes == source.stat().st_size
    assert tuple(view) == (16094, 16094, 16094)

    res = cli("ingest", "images", images, "--min-images", "1")
    assert res.exit_code == 0
    assert "imported 0, skipped 16094, failed 0" in res.stdout.splitlines()[0]
    assert res.stdout.splitlines()[1:] == ["  skipped 16094: already imported"]
    assert _count(engine) == 16094


def _bad_tree(shared_data: Path, root: Path) -> Path:
    """Three good images of location 1835 plus one bad file of every kind, in the original layout."""
    src = shared_data / "images" / "Cropped_Test_v1_buffer_75" / "000"
    shard = root / "Cropped_Test_v1_buffer_75" / "000"
    shard.mkdir(parents=True)
    for name in ("1835_0_0_March 2023_2024-01-03 19:45:07.253701.jpg",
                 "1835_0_1_November 2022_2024-01-03 19:45:14.160463.jpg",
                 "1835_0_2_June 2022_2024-01-03 19:45:20.790705.jpg"):
        shutil.copy(src / name, shard / name)
    real = (src / "1835_1_0_March 2023_2024-01-03 19:46:19.430110.jpg").read_bytes()
    (shard / "1835_1_0_March 2023_2024-01-03 19:46:19.430110.jpg").write_bytes(b"")
    (shard / "1835_1_1_November 2022_2024-01-03 19:46:26.254653.jpg").write_bytes(real[: len(real) // 2])
    (shard / "1835_1_2_June 2022_2024-01-03 19:46:33.005606.jpg").write_text("not a picture\n")
    shutil.copy(shared_data / "raw_examples" / "2041_0_0_September 2022_2024-01-06 19:01:18.855241.png",
                shard / "1835_1_3_September 2021_2024-01-03 19:46:40.056069.jpg")
    (shard / "holiday photo.jpg").write_bytes(real)
    (shard / "999999_0_0_March 2023_2024-01-03 19:45:07.253701.jpg").write_bytes(real)
    return root


def _expected_failures():
    p = "Cropped_Test_v1_buffer_75/000/"
    return [
        f"{p}1835_1_0_March 2023_2024-01-03 19:46:19.430110.jpg: empty file",
        f"{p}1835_1_1_November 2022_2024-01-03 19:46:26.254653.jpg: corrupt or truncated JPEG (image file is truncated",
        f"{p}1835_1_2_June 2022_2024-01-03 19:46:33.005606.jpg: not an image (unrecognised file format)",
        f"{p}1835_1_3_September 2021_2024-01-03 19:46:40.056069.jpg: not a JPEG image (PNG)",
        f"{p}999999_0_0_March 2023_2024-01-03 19:45:07.253701.jpg: unknown location 999999 "
        "(import its buffer CSV first: geoloc ingest locations)",
        f"{p}holiday photo.jpg: {NAME_ERROR}",
    ]


def _assert_failure_lines(lines: list[str]) -> None:
    expected = _expected_failures()
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected):
        assert line.startswith(want), (line, want)


def test_each_kind_of_bad_file_is_skipped_with_its_reason(cli, engine, shared_data, tmp_path):
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    root = _bad_tree(shared_data, tmp_path / "tree")
    res = cli("ingest", "images", root)
    assert res.exit_code == 0, res.output
    _assert_failure_lines(_stderr_lines(res))
    assert res.stdout.splitlines()[:2] == [
        f"9 files under {root.resolve()}: imported 3, skipped 0, failed 6 "
        f"({res.stdout.split('(')[1].split(')')[0]})",
        "  test v1: 3 imported",
    ]
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT time_index, is_query FROM images ORDER BY time_index")).all()
    assert [tuple(r) for r in rows] == [(0, True), (1, False), (2, False)]
    # the good ones are in, so a second run only repeats the failures
    res = cli("ingest", "images", root)
    assert "imported 0, skipped 3, failed 6" in res.stdout


def test_strict_stores_nothing_and_exits_1(cli, engine, shared_data, tmp_path):
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    root = _bad_tree(shared_data, tmp_path / "tree").resolve()
    res = cli("ingest", "images", root, "--strict")
    assert res.exit_code == 1
    lines = _stderr_lines(res)
    _assert_failure_lines(lines[:-2])
    assert lines[-2:] == [
        f"Error: {root}: 6 of 9 files could not be imported; nothing stored (--strict)",
        "Hint: fix or remove the files listed above, or run without --strict to skip them",
    ]
    assert res.stdout == ""
    assert _count(engine) == 0
    with pytest.raises(InputError) as info:
        ingest_images(root, strict=True)
    assert [rel for rel, _ in info.value.failures][-1] == "Cropped_Test_v1_buffer_75/000/holiday photo.jpg"


def test_files_outside_the_original_layout_need_split_and_version(cli, engine, shared_data, tmp_path):
    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    src = shared_data / "images" / "Cropped_Test_v1_buffer_75" / "000"
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in sorted(src.glob("1835_2_*.jpg"))[:4]:
        shutil.copy(f, plain / f.name)
    summary = ingest_images(plain)
    assert (summary.imported, summary.skipped, summary.failed) == (0, 0, 4)
    assert {reason for _, reason in summary.failures} == {
        "folder 'plain' does not name a split and version (Cropped_<Split>_<version>_buffer_<m>); "
        "pass --split and --version to import its files"}
    summary = ingest_images(plain, min_images=5, split="test", version="v1")
    assert (summary.imported, summary.skipped, summary.failed) == (0, 4, 0)
    assert summary.skips[0][1] == "only 4 image(s) for location 1835 heading 2, fewer than --min-images 5"
    summary = ingest_images(plain, split="test", version="v1")
    assert summary.imported == 4 and summary.per_split == {("test", "v1"): 4}
    assert summary.fallback_folders == {"plain": 4}
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT root, path FROM images ORDER BY path")).all()
    assert all(r.root == str(plain) and "/" not in r.path for r in rows)
    # the same files reached through a parent folder are recognised, not recorded twice
    summary = ingest_images(tmp_path)
    assert (summary.imported, summary.failed, summary.skip_reasons()) == (0, 0, {"already imported": 4})


def test_missing_folder_and_bad_min_images(cli, db_url, tmp_path):
    res = cli("ingest", "images", tmp_path / "nope")
    assert res.exit_code == 1 and res.stderr == f"Error: {tmp_path / 'nope'}: not a folder\n"
    res = cli("ingest", "images", tmp_path, "--min-images", "0")
    assert res.exit_code == 1 and res.stderr == "Error: --min-images: 0 must be at least 1\n"
