"""Training must learn: a short run on a few dozen real Stockholm locations beats the 16x16 thumbnail
baseline at Recall@1 on images it never trained on (the newest image of each place, the queries),
searched among the other images of those locations. Both recalls are computed here, with NumPy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from geoloc.collect.locations import ingest_locations
from geoloc.imagefile import open_image
from geoloc.imagery.importer import ingest_images
from geoloc.model import registry
from geoloc.model.sampler import load_split
from geoloc.model.train import TrainConfig, train
from geoloc.thumbnail import thumbnail_of
from model_images import load_images
from retrieval_data import copy_locations

TRAIN_DIR = "Cropped_Training_v1_buffer_100"
LOCATIONS = int(os.environ.get("G_LOC", 30))
GUARD = dict(input_size=int(os.environ.get("G_SIZE", 96)), dim=int(os.environ.get("G_DIM", 64)), epochs=int(os.environ.get("G_EPOCHS", 3)),
             steps_per_epoch=int(os.environ.get("G_STEPS", 20)), places=int(os.environ.get("G_P", 8)), per_place=int(os.environ.get("G_K", 4)),
             lr=float(os.environ.get("G_LR", 2e-3)), warmup_steps=10, val_split=None, seed=0, augment=os.environ.get("G_AUG", "1") == "1")


def recall_at_1(vectors: np.ndarray, locations: np.ndarray, is_query: np.ndarray) -> float:
    """Share of queries whose most similar database vector (cosine) is of the query's location."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    best = np.argmax(v[is_query] @ v[~is_query].T, axis=1)
    return float(np.mean(locations[~is_query][best] == locations[is_query]))


@pytest.mark.slow
def test_short_training_beats_the_thumbnail_baseline(db_url, engine, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(tmp_path / "data"))
    copy_locations(shared_data / "images" / TRAIN_DIR, tmp_path / "images", LOCATIONS)
    ingest_locations([shared_data / "buffers" / "new_order_buffer_100.csv"])
    assert ingest_images(tmp_path / "images").failed == 0
    t0 = time.monotonic()
    row = train("guard", TrainConfig(**GUARD))
    t1 = time.monotonic()
    assert row.status == "ready" and row.metrics["steps"] == GUARD["epochs"] * GUARD["steps_per_epoch"]

    with engine.connect() as conn:
        images = load_split(conn, "train", include_queries=True)
    files, loc, is_query = images.files(), images.location_ids, images.is_query
    assert is_query.sum() >= LOCATIONS and (~is_query).sum() > 3 * is_query.sum()
    model, _ = registry.load_embedder(None, "guard")
    pixels = load_images(files, row.input_size)
    trained = np.concatenate([model(pixels[i:i + 64], training=False).numpy() for i in range(0, len(pixels), 64)])
    thumbnails = np.stack([thumbnail_of(open_image(f)) for f in files])

    learned, baseline = recall_at_1(trained, loc, is_query), recall_at_1(thumbnails, loc, is_query)
    from geoloc.model.net import build_model
    import keras
    keras.utils.set_random_seed(0)
    un = build_model("mobilenetv3small", 64, row.input_size)
    untrained = np.concatenate([un(pixels[i:i + 64], training=False).numpy() for i in range(0, len(pixels), 64)])
    print("\nGUARD", GUARD, "train s", round(t1 - t0, 1), "learned", learned, "baseline", baseline,
          "untrained", recall_at_1(untrained, loc, is_query), "queries", int(is_query.sum()), "db", int((~is_query).sum()),
          [round(h["loss"], 4) for h in row.history])
    assert learned > baseline, (learned, baseline)
