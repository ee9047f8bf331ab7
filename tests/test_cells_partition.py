"""Adaptive H3 partitions on a small real subset: img_min/img_max respected, polygons contain their images."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import h3
import pytest
import sqlalchemy as sa
from retrieval_data import copy_train_val, import_train_val

LEVELS = (("--img-min", 20), ("--img-max", 200), ("--levels", 2), ("--ratio", 2))


@pytest.fixture(scope="module")
def subset(shared_data, tmp_path_factory) -> Path:
    return copy_train_val(shared_data, tmp_path_factory.mktemp("images"), 40, 6)


@pytest.fixture
def imported(db_url, subset, shared_data):
    assert import_train_val(shared_data, subset).failed == 0
    return subset


def _expected_cells(points: dict[tuple[float, float], int], img_min: int, img_max: int, min_res: int,
                    max_res: int) -> dict[str, int]:
    """Per point, walk down from min_res while the cell holds more than img_max images (shapely-free,
    counts straight from h3.latlng_to_cell at each resolution); keep the cell it stops in if it has
    img_min images or more."""
    count = {res: Counter() for res in range(min_res, max_res + 1)}
    for (lat, lng), n in points.items():
        for res in count:
            count[res][h3.latlng_to_cell(lat, lng, max_res) if res == max_res
                       else h3.cell_to_parent(h3.latlng_to_cell(lat, lng, max_res), res)] += n
    kept = {}
    for lat, lng in points:
        finest = h3.latlng_to_cell(lat, lng, max_res)
        res = min_res
        cell = h3.cell_to_parent(finest, res)
        while count[res][cell] > img_max and res < max_res:
            res += 1
            cell = h3.cell_to_parent(finest, res) if res < max_res else finest
        if count[res][cell] >= img_min:
            kept[cell] = count[res][cell]
    return kept


def test_partition_respects_img_min_and_img_max(imported, cli, engine):
    res = cli("cells", "build", "p", *[str(x) for pair in LEVELS for x in pair], "--min-res", 7, "--max-res", 10)
    assert res.exit_code == 0, res.output
    with engine.connect() as conn:
        points = Counter()
        for lat, lng, n in conn.execute(sa.text(
                "SELECT ST_Y(l.geom), ST_X(l.geom), count(*) FROM images i JOIN locations l ON l.id = i.location_id"
                " WHERE i.split = 'train' GROUP BY l.id")).all():
            points[(lat, lng)] += n
        stored = conn.execute(sa.text(
            "SELECT c.level, c.h3, c.images, c.resolution FROM cells c JOIN cell_partitions p ON p.id = c.partition_id"
            " WHERE p.name = 'p'")).all()
        part = conn.execute(sa.text("SELECT img_max, levels, images FROM cell_partitions WHERE name = 'p'")).one()
    assert part.img_max == [200, 100] and part.levels == 2 and part.images == sum(points.values())
    for level, img_max in enumerate((200, 100)):
        expected = _expected_cells(points, 20, img_max, 7, 10)
        got = {r.h3: r.images for r in stored if r.level == level}
        assert got == expected, level
        assert all(n >= 20 for n in got.values())
        assert all(n <= img_max for c, n in got.items() if h3.get_resolution(c) < 10)
    # the finer level has more cells here (the subset holds more than 200 images in some res-7 cell)
    assert len([r for r in stored if r.level == 1]) > len([r for r in stored if r.level == 0]) > 0


def test_cell_polygons_contain_their_images_and_nest(imported, cli, engine):
    assert cli("cells", "build", "p", *[str(x) for pair in LEVELS for x in pair]).exit_code == 0
    with engine.connect() as conn:
        # images counted by polygon containment (PostGIS) equal the cells' counts from H3 indexes
        rows = conn.execute(sa.text(
            "SELECT c.id, c.images, (SELECT count(*) FROM images i JOIN locations l ON l.id = i.location_id"
            "  WHERE i.split = 'train' AND ST_Contains(c.geom, l.geom)) AS inside FROM cells c")).all()
        outside = conn.execute(sa.text(
            "SELECT count(*) FROM location_cells lc JOIN cells c ON c.id = lc.cell_id"
            " JOIN locations l ON l.id = lc.location_id WHERE NOT ST_Contains(c.geom, l.geom)")).scalar_one()
        assigned = conn.execute(sa.text("SELECT count(*) FROM location_cells")).scalar_one()
        loose = conn.execute(sa.text(
            "SELECT count(*) FROM cells c JOIN cells p ON p.id = c.parent_id"
            " WHERE NOT ST_Covers(ST_Buffer(p.geom, 1e-9), c.geom) OR p.level <> c.level - 1")).scalar_one()
        orphans = conn.execute(sa.text("SELECT count(*) FROM cells WHERE (level = 0) <> (parent_id IS NULL)")).scalar_one()
        view = conn.execute(sa.text("SELECT count(*), count(DISTINCT id) FROM v_cells")).one()
    assert rows and all(r.images == r.inside for r in rows)
    assert assigned > 0 and outside == 0 and loose == 0 and orphans == 0
    assert view[0] == view[1] == len(rows)


def test_rebuild_swaps_and_errors_are_one_line(imported, cli, engine):
    assert cli("cells", "build", "p", "--img-min", 20).exit_code == 0
    res = cli("cells", "build", "p")
    assert res.exit_code == 1
    assert res.stderr == ("Error: cell partition 'p' already exists\n"
                          "Hint: rebuild it with --replace (models trained on it keep the old one)\n")
    res = cli("cells", "build", "p", "--img-min", 30, "--replace")
    assert res.exit_code == 0 and "the previous 'p' was deleted" in res.stdout
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT img_min FROM cell_partitions")).scalars().all() == [30]
    res = cli("cells", "build", "q", "--img-min", 100000)
    assert res.exit_code == 1 and res.stderr.startswith("Error: the finest level's img_max (100) must exceed --img-min")
    res = cli("cells", "build", "q", "--img-min", 90, "--img-max", 100, "--levels", 1)
    assert res.exit_code == 0 or res.stderr.startswith("Error: level 0 (img_max 100) keeps no cell")
    res = cli("cells", "build", "bad name")
    assert res.exit_code == 1 and res.stderr.startswith("Error: invalid partition name 'bad name'")


def test_build_without_images_stores_nothing(db_url, cli, engine):
    res = cli("cells", "build", "p")
    assert res.exit_code == 1
    assert res.stderr == "Error: no images in split 'train' to partition\nHint: import images first: geoloc ingest images DIR\n"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cell_partitions")).scalar_one() == 0


def test_a_build_inside_the_callers_transaction_goes_with_it(imported, engine):
    """With conn, build_partition is a step of the caller's transaction: list_partitions on the same
    connection sees it, and a rollback leaves no partition and no cells."""
    from geoloc.cells.partition import build_partition, list_partitions

    with engine.connect() as conn:
        with conn.begin() as tx:
            summary = build_partition("inside", img_min=20, img_max=200, levels=1, conn=conn)
            assert summary.images > 0 and len(summary.levels) == 1
            assert [p["name"] for p in list_partitions(conn)] == ["inside"]
            tx.rollback()
    assert list_partitions() == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cells")).scalar_one() == 0
