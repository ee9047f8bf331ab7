"""Cell heads trained jointly with the embedder on a tiny real subset, and the hybrid search on them."""

from __future__ import annotations

import json
import os

import h3
import numpy as np
import pytest
import sqlalchemy as sa

from geoloc.model import registry
from tests.retrieval_data import TEMPLATE, drop_database
from tests.test_cells_partition import TRAIN_DIR, VAL_DIR, copy_locations

TINY = ["--input-size", 64, "--dim", 32, "--epochs", 2, "--steps-per-epoch", 4, "--places", 4, "--per-place", 4,
        "--lr", 1e-3, "--warmup-steps", 1, "--seed", 3]


@pytest.fixture(scope="module")
def trained(pg_cluster, shared_data, tmp_path_factory):
    """A database with 12 training and 8 validation locations, partition 'p', model 'm' with cells, embedded."""
    from click.testing import CliRunner

    from geoloc.cli import main
    from geoloc.collect.locations import ingest_locations
    from geoloc.imagery.importer import ingest_images
    from geoloc.retrieval.embed import embed_images

    name = f"c_{os.getpid()}"
    pg_cluster.create_database(name, template=TEMPLATE)
    url = pg_cluster.url(name)
    root = tmp_path_factory.mktemp("cells_images")
    copy_locations(shared_data / "images" / TRAIN_DIR, root, 12)
    copy_locations(shared_data / "images" / VAL_DIR, root, 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOLOC_DATABASE_URL", url)
        mp.setenv("GEOLOC_DATA_DIR", str(root / "data"))
        buffers = shared_data / "buffers"
        ingest_locations([buffers / "new_order_buffer_100.csv", buffers / "new_order_buffer_35.csv"])
        assert ingest_images(root).failed == 0
        runner = CliRunner()
        res = runner.invoke(main, ["cells", "build", "p", "--img-min", "20", "--img-max", "200", "--levels", "2",
                                   "--ratio", "2"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        res = runner.invoke(main, ["train", "--name", "m", "--cells", "p", "--cell-weight", "0.5",
                                   *map(str, TINY)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        embed_images("m")
        yield url, res.stdout
    drop_database(pg_cluster, name, url)


@pytest.fixture
def db(trained, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATABASE_URL", trained[0])
    return sa.create_engine(trained[0])


@pytest.mark.slow
def test_train_with_cells_stores_one_head_row_per_cell_and_the_partition(trained, db):
    assert "cell heads: " in trained[1] and "of partition 'p'" in trained[1]
    row = registry.get_model(None, "m")
    with db.connect() as conn:
        part = conn.execute(sa.text("SELECT id FROM cell_partitions WHERE name = 'p'")).scalar_one()
        cells = conn.execute(sa.text("SELECT id FROM cells WHERE partition_id = :p ORDER BY id"), {"p": part}).scalars().all()
        heads = conn.execute(sa.text("SELECT cell_id, vector_dims(weight) FROM model_cells WHERE model_id = :m"
                                     " ORDER BY cell_id"), {"m": row.id}).all()
    assert row.status == "ready"
    assert row.hyperparams["cells"] == "p" and row.hyperparams["cells_partition_id"] == part
    assert row.hyperparams["cell_weight"] == 0.5 and row.hyperparams["ms_weight"] == 1.0
    assert [h[0] for h in heads] == cells and {h[1] for h in heads} == {32}
    assert len(cells) == sum(row.data_counts["cells_per_level"]) and len(row.data_counts["cells_per_level"]) == 2
    assert len(row.history) == 2 and all(h["loss"] > 0 for h in row.history)
