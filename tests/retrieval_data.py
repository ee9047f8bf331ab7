"""Shared data for the retrieval tests: a tiny real subset of Test v1 in its own database per module.

The images of the first few Test v1 locations are copied into a folder named like the original
(Cropped_Test_v1_buffer_75) and imported with geoloc's own importer; the thumbnail baseline and an
untrained MobileNetV3-Small (dim 32, input 64: fast) are embedded with `embed_images`. Building this
takes seconds, so test modules share it read-mostly (module scope) instead of rebuilding per test.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from geoloc.db import engine as db_engine

TEMPLATE = "geoloc_template"  # the migrated template database of tests/conftest.py
TEST_FOLDER = "Cropped_Test_v1_buffer_75"
TRAIN_FOLDER, VAL_FOLDER = "Cropped_Training_v1_buffer_100", "Cropped_Validation_v1_buffer_35"
TRAIN_VAL_BUFFERS = ("new_order_buffer_100.csv", "new_order_buffer_35.csv")
TINY_MODEL = "tiny"
_counter = itertools.count()


@dataclass
class Subset:
    url: str
    root: Path  # the import root (holds TEST_FOLDER)
    location_ids: list[int]
    images: int


def copy_locations(src: Path, dst: Path, count: int) -> None:
    """The images of the first `count` locations of a shared folder, same folder names and shards."""
    files = sorted(src.rglob("*.jpg"))
    keep = sorted({int(f.name.split("_")[0]) for f in files})[:count]
    for f in files:
        if int(f.name.split("_")[0]) in keep:
            target = dst / src.name / f.parent.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)


def copy_train_val(shared_data: Path, root: Path, train: int, val: int = 0) -> Path:
    """ROOT holding the images of the first TRAIN training and VAL validation locations (original names)."""
    copy_locations(shared_data / "images" / TRAIN_FOLDER, root, train)
    if val:
        copy_locations(shared_data / "images" / VAL_FOLDER, root, val)
    return root


def import_train_val(shared_data: Path, root: Path):
    """The training and validation buffer selections, then ROOT's images, through geoloc's importers
    into the current database; the import summary."""
    from geoloc.collect.locations import ingest_locations
    from geoloc.imagery.importer import ingest_images

    ingest_locations([shared_data / "buffers" / name for name in TRAIN_VAL_BUFFERS])
    return ingest_images(root)


def first_test_locations(shared_data: Path, n: int) -> dict[int, list[Path]]:
    """The image files of the n smallest location ids of Test v1."""
    files: dict[int, list[Path]] = {}
    for path in sorted((shared_data / "images" / TEST_FOLDER).rglob("*.jpg")):
        files.setdefault(int(path.name.split("_", 1)[0]), []).append(path)
    return {loc: files[loc] for loc in sorted(files)[:n]}


def copy_subset(shared_data: Path, dest: Path, n: int) -> tuple[Path, dict[int, list[Path]]]:
    chosen = first_test_locations(shared_data, n)
    target = dest / TEST_FOLDER / "000"
    target.mkdir(parents=True)
    for paths in chosen.values():
        for p in paths:
            shutil.copy2(p, target / p.name)
    return dest / TEST_FOLDER, chosen


def load_subset(shared_data: Path, dest: Path, n: int) -> tuple[Path, list[int], int]:
    """Import the buffer CSV of Test v1, the area and the images of n locations into the current database."""
    from geoloc.collect.area import ingest_area
    from geoloc.collect.locations import ingest_locations
    from geoloc.imagery.importer import ingest_images

    ingest_locations([shared_data / "buffers" / "new_order_buffer_75.csv"])
    ingest_area(shared_data / "Stockholm.geojson", "stockholm")
    root, chosen = copy_subset(shared_data, dest, n)
    summary = ingest_images(root)
    assert summary.failed == 0, summary.failures
    return root, sorted(chosen), summary.imported


def make_tiny_model(dest: Path, name: str = TINY_MODEL):
    from geoloc.model.train import save_untrained

    return save_untrained(name, "mobilenetv3small", 32, 64, seed=0, out=dest / name)


def drop_database(pg_cluster, name: str, url: str) -> None:
    """Drop the test database NAME as the cluster's admin: WITH (FORCE) may then end the backends of
    every role (the app role may end only its own, not a read-only service's still closing)."""
    db_engine.get_engine(url).dispose()
    pg_cluster.drop_database(name)


def subset_fixture(n_locations: int = 8, models: tuple[str, ...] = ("thumbnail-16", TINY_MODEL)):
    """A module-scoped fixture: a database with the subset imported and MODELS embedded."""

    @pytest.fixture(scope="module")
    def subset_db(pg_cluster, shared_data, tmp_path_factory):
        from geoloc.retrieval.embed import embed_images

        name = f"r_{os.getpid()}_{next(_counter)}"
        pg_cluster.create_database(name, template=TEMPLATE)
        url = pg_cluster.url(name)
        tmp = tmp_path_factory.mktemp("subset")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GEOLOC_DATABASE_URL", url)
            root, locations, images = load_subset(shared_data, tmp, n_locations)
            for model in models:
                if model == TINY_MODEL:
                    make_tiny_model(tmp)
                embed_images(model)
        yield Subset(url, root, locations, images)
        drop_database(pg_cluster, name, url)

    return subset_db


@pytest.fixture
def subset(subset_db, monkeypatch) -> Subset:
    """The module's subset database, with GEOLOC_DATABASE_URL pointing at it for this test."""
    monkeypatch.setenv("GEOLOC_DATABASE_URL", subset_db.url)
    return subset_db
