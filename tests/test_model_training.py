"""Training from the database on a small real subset: sampler, 2-epoch run, registry, resume, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from geoloc.db import models as db_models
from geoloc.model import registry
from geoloc.model.sampler import PKSampler, load_split
from geoloc.model.train import Interrupted, TrainConfig, save_untrained, train
from retrieval_data import copy_train_val, import_train_val

CHOICES = "mobilenetv3small, mobilenetv3large, efficientnetb0, resnet50"
TINY = dict(input_size=64, dim=32, epochs=2, steps_per_epoch=5, places=4, per_place=4, lr=1e-3,
            warmup_steps=1, seed=3)


@pytest.fixture(scope="module")
def subset(shared_data, tmp_path_factory) -> Path:
    return copy_train_val(shared_data, tmp_path_factory.mktemp("images"), 12, 8)


@pytest.fixture
def imported(db_url, subset, shared_data, tmp_path, monkeypatch) -> Path:
    """Database with the subset's locations and images; model files go under tmp_path."""
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(tmp_path / "data"))
    summary = import_train_val(shared_data, subset)
    assert summary.imported > 400 and summary.failed == 0
    return subset


def test_sampler_batches_come_from_the_train_split_only(imported, engine):
    with engine.connect() as conn:
        train_set = load_split(conn, "train", None, include_queries=False)
        with_queries = load_split(conn, "train", None, include_queries=True)
        splits = dict(conn.execute(sa.text("SELECT id, split FROM images")).all())
        queries = set(conn.execute(sa.text("SELECT id FROM images WHERE is_query")).scalars())
    assert len(train_set) and {splits[i] for i in train_set.ids} == {"train"}
    assert not set(train_set.ids) & queries
    assert set(with_queries.ids) - set(train_set.ids) == {i for i in queries if splits[i] == "train"}
    sampler = PKSampler(train_set.place, places=8, per_place=4, seed=0)
    idx, lab = sampler.epoch(0, steps=10)
    for b_idx, b_lab in zip(idx, lab):
        ids = train_set.ids[b_idx]
        assert {splits[i] for i in ids} == {"train"} and not set(ids) & queries
        places = list(zip(train_set.location_ids[b_idx], train_set.headings[b_idx]))
        assert len(set(places)) == 8 and all(places.count(p) == 4 for p in set(places))
        assert all(len(set(train_set.place[b_idx[b_lab == g]])) == 1 for g in set(b_lab))


@pytest.mark.slow
def test_two_epochs_lower_the_loss_register_the_model_and_resume_matches(imported, cli, engine, tmp_path):
    # uninterrupted run, through the CLI
    started = time.monotonic()
    res = cli("train", "--name", "full", "--input-size", 64, "--dim", 32, "--epochs", 2, "--steps-per-epoch", 5,
              "--places", 4, "--per-place", 4, "--lr", 1e-3, "--warmup-steps", 1, "--seed", 3)
    assert res.exit_code == 0, res.output
    assert "16x16 thumbnails" in res.stdout
    row = db_models.get_model(None, "full")
    hp = row.hyperparams
    # trained at 64 px; 96 (5/3 of it, to a multiple of 32) tried for embedding, kept if it validated better
    assert (hp["input_size"], hp["embed_size"]) == (64, 96)
    side = 96 if hp["embed_size_check"]["kept"] else 64
    assert (row.status, row.backbone, row.dim, row.input_size, row.train_split) == \
        ("ready", "mobilenetv3small", 32, side, "train")
    ready = f"{side}px" + (" (trained at 64px)" if side == 96 else "")
    assert f"model 'full' ready: mobilenetv3small {ready} dim 32, 10 steps" in res.stdout
    assert {k: hp[k] for k in TINY} == TINY
    assert set(TrainConfig.__dataclass_fields__) <= set(hp) and hp["batch"] == 16 and hp["bn_momentum"] == 0.9
    weights = Path(row.weights_path)
    kept = "whitened.weights.h5" if hp.get("whiten") else "best.weights.h5"  # the final whitening step's choice
    assert weights == tmp_path / "data" / "models" / str(row.id) / kept  # the id, not the name
    assert row.weights_sha256 == registry.file_sha256(weights)
    assert (weights.parent / "training_curve.png").stat().st_size > 5000
    assert 0 < row.train_seconds <= time.monotonic() - started  # the run's own clock, within the command's
    counts = row.data_counts
    assert counts["train_versions"] == {"v1": counts["train_images"]} and counts["train_locations"] == 12
    with engine.connect() as conn:  # every training image by default, the newest of each place included
        train_images = conn.execute(sa.text("SELECT count(*) FROM images WHERE split = 'train'")).scalar()
    assert counts["train_images"] == train_images
    assert counts["val_locations"] == 8 and counts["val_queries"] > 0 and counts["val_database"] > 0
    history = row.history
    assert [h["epoch"] for h in history] == [1, 2] and [h["global_step"] for h in history] == [5, 10]
    assert history[1]["loss"] < history[0]["loss"]  # training lowers the loss
    # a recall over N queries is a whole number of queries divided by N
    queries = counts["val_queries"]
    for h in history:
        for key in ("val_recall@1", "val_recall@5", "val_recall@10", "thumbnail_val_recall@1"):
            assert h[key] * queries == pytest.approx(round(h[key] * queries), abs=1e-6), (key, h[key])
    # images/s counts batch 16 over every step but the session's first (it traces the graph): 4, then 5
    assert [h["images_per_s"] * h["train_s"] for h in history] == pytest.approx([4 * 16, 5 * 16])
    assert row.metrics["best_epoch"] in (1, 2) and row.metrics["steps"] == 10

    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [m["name"] for m in listed] == ["full"] and listed[0]["status"] == "ready"
    shown = json.loads(cli("models", "show", "full").stdout)
    assert shown["weights_sha256"] == row.weights_sha256 and len(shown["history"]) == 2
    assert "full" in cli("models", "list").stdout

    # the same run interrupted (Ctrl-C) at step 7, then resumed: same step count, same result
    def ctrl_c(step, loss):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as stop:
        train("broken", TrainConfig(**TINY), on_step=ctrl_c, progress=False)
    assert stop.value.step == 7
    assert db_models.get_model(None, "broken").status == "training"
    res = cli("train", "--name", "broken", "--resume")
    assert res.exit_code == 0, res.output
    resumed = db_models.get_model(None, "broken")
    assert resumed.status == "ready" and resumed.metrics["steps"] == row.metrics["steps"] == 10
    assert [h["global_step"] for h in resumed.history] == [5, 10]
    assert resumed.history[0]["loss"] == pytest.approx(history[0]["loss"], rel=1e-4)
    assert resumed.history[1]["loss"] == pytest.approx(history[1]["loss"], rel=1e-3)
    assert resumed.history[1]["val_recall@1"] == pytest.approx(history[1]["val_recall@1"], abs=0.02)

    # the name is taken now
    res = cli("train", "--name", "full", "--input-size", 64)
    assert res.exit_code == 1
    assert res.stderr == "Error: model 'full' already exists\nHint: choose another --name\n"


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_like_ctrl_c(imported):
    def kill_at_3(step, loss):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as stop:
        train("killed", TrainConfig(**TINY), on_step=kill_at_3, progress=False)
    assert stop.value.step == 3
    row = db_models.get_model(None, "killed")
    assert row.status == "training"
    ckpt = Path(stop.value.checkpoint)
    assert (ckpt / "model.weights.h5").stat().st_size > 0 and (ckpt / "optimizer.npz").is_file()
    assert json.loads((ckpt / "state.json").read_text())["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


@pytest.mark.slow
def test_similar_batches_keep_the_places_mean_embeddings_and_resume_draws_the_same_batches(imported):
    cfg = dict(TINY, epochs=3, batches="similar", val_split=None)
    full = train("similar", TrainConfig(**cfg), progress=False)
    assert full.status == "ready" and full.hyperparams["batches"] == "similar"

    def ctrl_c(step, loss):
        if step == 8:  # three steps into epoch 2, whose batches come from epoch 1's embeddings
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as stop:
        train("similar-resumed", TrainConfig(**cfg), on_step=ctrl_c, progress=False)
    with np.load(Path(stop.value.checkpoint) / "sampler.npz") as saved:
        proxies, counts, sums = saved["proxies"], saved["counts"], saved["sums"]
    known = np.abs(proxies).sum(axis=1) > 0
    # epoch 1 saw 5 batches of 4 places: at least 5 places (the anchors), at most 20
    assert 5 <= known.sum() <= 20 and np.allclose(np.linalg.norm(proxies[known], axis=1), 1, atol=1e-5)
    assert counts.sum() == 3 * 16 and np.all(sums[counts == 0] == 0)  # epoch 2's three steps so far
    resumed = train("similar-resumed", resume=True, progress=False)
    assert [h["global_step"] for h in resumed.history] == [5, 10, 15]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-3)


@pytest.mark.slow
def test_ema_keeps_the_moving_average_of_the_weights_and_resumes_it(imported):
    from geoloc.model.net import build_model

    cfg = TrainConfig(**dict(TINY, epochs=1, steps_per_epoch=2, val_split=None, ema=0.75))
    model = build_model(cfg.backbone, cfg.dim, cfg.input_size, "none", 0, cfg.gem_p, False)

    def weights(path) -> tuple[list, list]:
        """The trainable and the other variables' values of a .weights.h5 file."""
        model.load_weights(path)
        return [v.numpy() for v in model.trainable_variables], [v.numpy() for v in model.non_trainable_variables]

    def ctrl_c(step, loss):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as stop:
        train("ema-cut", cfg, on_step=ctrl_c, progress=False)
    w1, _ = weights(Path(stop.value.checkpoint) / "model.weights.h5")  # the weights after step 1
    row = train("ema", cfg, progress=False)
    w2, stats2 = weights(Path(row.weights_path).parent / "checkpoint" / "model.weights.h5")  # after step 2
    averaged, stats = weights(row.weights_path)
    # the first step's weights start the average; the second's momentum is warming up: (1 + 1) / (10 + 1)
    for a, b, got in zip(w1, w2, averaged):
        np.testing.assert_allclose(got, 2 / 11 * a + 9 / 11 * b, atol=1e-6)
    assert max(np.abs(got - b).max() for got, b in zip(averaged, w2)) > 1e-4  # not the last weights
    assert all(np.array_equal(s, s2) for s, s2 in zip(stats, stats2))  # BatchNorm's statistics of the last step
    resumed = train("ema-cut", resume=True, progress=False)  # the average survives the checkpoint
    again, _ = weights(resumed.weights_path)
    for got, want in zip(again, averaged):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_ema_momentum_warms_up_to_its_ceiling_by_hand():
    from geoloc.model.train import ema_momentum

    # (1 + step) / (10 + step), at most 0.95
    expected = {0: 0.1, 1: 2 / 11, 8: 0.5, 90: 0.91, 100: 101 / 110, 200: 0.95, 10_000: 0.95}
    got = {step: float(ema_momentum(step, 0.95)) for step in expected}
    assert got == pytest.approx(expected, rel=1e-6)


def test_warmup_cosine_schedule_by_hand():
    from geoloc.model.train import WarmupCosine

    lr = WarmupCosine(0.1, warmup=4, total=14)
    # warm-up: 0.1 * (step + 1) / 4; then 0.1 * (0.01 + 0.99 * (1 + cos(pi * (step - 4) / 10)) / 2)
    expected = {0: 0.025, 1: 0.05, 3: 0.1, 4: 0.1, 9: 0.1 * (0.01 + 0.99 * 0.5), 14: 0.001, 20: 0.001}
    got = {step: float(lr(step)) for step in expected}
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_time_budget_stops_cleanly_with_a_usable_model(imported):
    row = train("quick", TrainConfig(**TINY), max_minutes=0, progress=False)
    assert row.status == "ready" and row.metrics["steps"] == 1
    assert [(h["epoch"], h["steps"], h["complete"]) for h in row.history] == [(1, 1, False)]
    assert Path(row.weights_path).is_file() and "val_recall@1" in row.history[0]


def test_train_cli_errors_are_exact(db_url, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(tmp_path))
    res = cli("train", "--name", "m", "--weights", "/nonexistent")
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        "Error: /nonexistent: weights file not found",
        "Hint: use --weights none (train from scratch), imagenet (Keras' download) or the path of a "
        ".keras/.weights.h5 file",
    ]
    res = cli("train", "--name", "m", "--backbone", "vgg16")
    assert res.exit_code == 1 and res.stderr == f"Error: unknown backbone 'vgg16' (choose one of: {CHOICES})\n"
    res = cli("train", "--name", "m", "--batch", 30)
    assert res.exit_code == 1 and res.stderr == "Error: --batch 30 is not a multiple of --per-place 4\n"
    res = cli("train", "--name", "m", "--augment", 3)
    assert res.exit_code == 1 and res.stderr == "Error: augment must be in [0, 2.5] (got 3.0)\n"
    res = cli("train", "--name", "m", "--ms-alpha", 0)
    assert res.exit_code == 1 and res.stderr == "Error: ms-alpha must be positive (got 0.0)\n"
    res = cli("train", "--name", "m", "--weight-decay", -0.05)
    assert res.exit_code == 1 and res.stderr == "Error: weight-decay must not be negative (got -0.05)\n"
    res = cli("train", "--name", "m", "--ema", 1)
    assert res.exit_code == 1 and res.stderr == "Error: ema must be in [0, 1) (got 1.0)\n"
    res = cli("train", "--name", "m", "--gem-p", 0)
    assert res.exit_code == 1 and res.stderr == "Error: gem-p must be positive (got 0.0)\n"
    res = cli("train", "--name", "m", "--freeze", -3)
    assert res.exit_code == 1 and res.stderr == "Error: freeze must not be negative (got -3)\n"
    res = cli("train", "--name", "m", "--cell-weight", -1)
    assert res.exit_code == 1 and res.stderr == "Error: cell-weight must not be negative (got -1.0)\n"
    res = cli("train", "--name", "m", "--ms-weight", 0)
    assert res.exit_code == 1
    assert res.stderr == "Error: ms-weight is 0 and no cell loss is on (--cells, --cell-weight): nothing to learn\n"
    res = cli("train", "--name", "m", "--ms-base", 1.5)
    assert res.exit_code == 1
    assert res.stderr == "Error: ms-base is a cosine similarity: it must be in [-1, 1] (got 1.5)\n"
    res = cli("train", "--name", "nope", "--resume")
    assert res.exit_code == 1
    assert res.stderr == "Error: model 'nope' not found: nothing to resume\nHint: see 'geoloc models list'\n"
    res = cli("train", "--name", "nope", "--resume", "--lr", "0.1")
    assert res.exit_code == 1 and res.stderr.startswith("Error: --lr: cannot change with --resume")
    res = cli("train", "--name", "m")  # an empty database: nothing to train on
    assert res.exit_code == 1
    assert res.stderr == "Error: no images in split 'train'\nHint: import images first: geoloc ingest images DIR\n"
    with sa.create_engine(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM models")).scalar() == 0
    res = cli("models", "show", "nope")
    assert res.exit_code == 1 and res.stderr == "Error: model 'nope' not found\nHint: see 'geoloc models list'\n"
    assert cli("models", "list").stdout.startswith("no models registered")


def test_untrained_model_registers_and_loads_back(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(tmp_path))
    row = save_untrained("u", "mobilenetv3small", dim=16, input_size=48, seed=1)
    assert row.status == "ready" and row.dim == 16 and Path(row.weights_path).is_file()
    model, loaded_row = registry.load_embedder(None, "u")
    assert loaded_row.id == row.id
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype(np.float32)
    again, _ = registry.load_embedder(None, "u")
    np.testing.assert_allclose(model(x, training=False), again(x, training=False), atol=1e-6)
    from geoloc.model.net import build_model
    import keras

    keras.utils.set_random_seed(1)
    np.testing.assert_allclose(model(x, training=False),
                               build_model("mobilenetv3small", 16, 48)(x, training=False), atol=1e-5)
    with pytest.raises(Exception) as err:
        save_untrained("u", dim=16, input_size=48)
    assert str(err.value) == "model 'u' already exists"
    default = save_untrained("d", input_size=48)  # the default embedding size: 512 (measured best on two cores)
    assert default.dim == 512 and registry.load_embedder(None, "d")[0].output_shape == (None, 512)
    with pytest.raises(Exception) as err:
        db_models.get_model(None, "missing")
    assert str(err.value) == "model 'missing' not found" and err.value.hint == "see 'geoloc models list'"
