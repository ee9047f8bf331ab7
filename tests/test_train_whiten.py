"""`geoloc train` tries a larger inference side, then learns a whitening from the training split's
embeddings and places at the end, and keeps each only if it raises val Recall@1; the kept side is the
registered input size, the kept whitening part of the registered model's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoloc.model import registry
from geoloc.model.train import Interrupted, TrainConfig, train
from geoloc.model.validate import keep_if_better
from geoloc.model.whitening import fit_whitening
from retrieval_data import copy_train_val, import_train_val

TINY = dict(input_size=64, embed_size=64, dim=32, epochs=1, steps_per_epoch=4, places=4, per_place=4, lr=1e-3,
            warmup_steps=1, seed=3)


@pytest.fixture(scope="module")
def subset(shared_data, tmp_path_factory) -> Path:
    return copy_train_val(shared_data, tmp_path_factory.mktemp("images"), 12, 8)


@pytest.fixture
def imported(db_url, subset, shared_data, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(tmp_path / "data"))
    assert import_train_val(shared_data, subset).failed == 0
    return subset


def _recall1(emb: np.ndarray, loc: np.ndarray, is_query: np.ndarray) -> float:
    """Recall@1 by cosine similarity, computed here independently of geoloc.model.validate."""
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb[is_query] @ emb[~is_query].T
    return float((loc[~is_query][sims.argmax(axis=1)] == loc[is_query]).mean())


def _images(split: str, include_queries: bool):
    from geoloc.db.engine import begin
    from geoloc.model.data import cache_side, decode_cache
    from geoloc.model.sampler import load_split

    with begin() as conn:
        s = load_split(conn, split, None, include_queries)
    return decode_cache(s.files(), cache_side(TINY["input_size"])), s


def _places(images) -> np.ndarray:
    """A label per image: its (location, heading) pair, the place the learned whitening groups by."""
    return np.unique(np.stack([images.location_ids, images.headings], axis=1), axis=0, return_inverse=True)[1]


@pytest.mark.slow
def test_training_keeps_the_whitening_only_when_it_helps_and_resume_redoes_it(imported):
    from geoloc.model.net import build_model
    from geoloc.model.validate import embed_cached, recall_at_k

    def recall(emb):  # the trainer's protocol: newest image per place as query, the rest as database
        emb, q = np.asarray(emb, np.float32), val.is_query
        return recall_at_k(emb[q], val.location_ids[q], emb[~q], val.location_ids[~q])

    def stop_after_whitening(kind, info):  # killed once the decision is taken, before the model is ready
        if kind == "whitening":
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        train("wh", TrainConfig(**TINY), progress=stop_after_whitening)
    assert registry.get_model(None, "wh").status == "training"
    reports = []
    row = train("wh", resume=True, progress=lambda kind, info: reports.append((kind, info)))
    assert row.status == "ready" and row.dim == 32
    assert [k for k, _ in reports if k.startswith("whitening")] == ["whitening_fit", "whitening"]

    embedder, _ = registry.load_embedder(None, "wh")
    raw = build_model("mobilenetv3small", 32, 64)  # the same network without whitening, same weights
    for layer in raw.layers:
        layer.set_weights(embedder.get_layer(layer.name).get_weights())
    train_cache, train_split = _images("train", True)  # every training image: what the trainer trains and fits on
    val_cache, val = _images("val", True)
    whitening = fit_whitening(embed_cached(raw, train_cache, 64), places=_places(train_split))
    raw_val = embed_cached(raw, val_cache, 64)
    stored_val = embed_cached(embedder, val_cache, 64)

    hp = row.hyperparams
    check = hp["whitening_check"]
    assert check["fit_split"] == "train" and check["fit_count"] == len(train_split)
    assert check["method"] == "learned (within-place scatter)"
    raw_fig = recall(raw_val)
    assert check["val_raw"] == pytest.approx(raw_fig, abs=1e-9)
    kept = check["val_whitened"]["recall@1"] > raw_fig["recall@1"]
    assert check["kept"] is kept and bool(hp["whiten"]) is kept
    assert ("whitening" in [layer.name for layer in embedder.layers]) is kept
    if kept:  # the stored network is the raw one followed by the whitening fitted on the training split
        assert hp["whiten"]["base_dim"] == 32 and hp["whiten"]["dims"] == 32
        kernel, bias = embedder.get_layer("whitening").get_weights()
        assert np.allclose(kernel, whitening.projection, rtol=1e-4, atol=1e-6 * np.abs(kernel).max())
        assert np.allclose(bias, -whitening.mean @ whitening.projection, rtol=1e-4, atol=1e-6 * np.abs(bias).max())
        assert recall(stored_val) == pytest.approx(check["val_whitened"], abs=1e-9)
        weights = Path(row.weights_path)
        assert weights.name == "whitened.weights.h5" and (weights.parent / "best.weights.h5").is_file()
    else:
        assert Path(row.weights_path).name == "best.weights.h5"
        assert np.allclose(stored_val, raw_val, atol=1e-5)


@pytest.mark.slow
def test_the_larger_inference_side_is_kept_only_when_it_raises_val_recall_at_1_with_its_whitening(imported, cli):
    from geoloc.model.net import build_model
    from geoloc.model.validate import embed_cached, recall_at_k

    args = [a for k, v in {**TINY, "embed_size": 96}.items() for a in (f"--{k.replace('_', '-')}", v)]
    res = cli("train", "--name", "sides", *args)
    assert res.exit_code == 0, res.output
    row = registry.get_model(None, "sides")
    hp = row.hyperparams
    check = hp["embed_size_check"]
    assert (check["input_size"], check["embed_size"]) == (64, 96)
    # the best weights at both sides, raw, measured here on the validation images; a side's figure is
    # that one, or a higher one when its own whitening helped there
    best = build_model("mobilenetv3small", 32, 64)
    best.load_weights(Path(row.weights_path).with_name("best.weights.h5"))
    train_cache, train_split = _images("train", True)  # every training image: what the trainer trains and fits on
    val_cache, val = _images("val", True)
    q = val.is_query

    def recall(emb):
        return recall_at_k(emb[q], val.location_ids[q], emb[~q], val.location_ids[~q])

    raw, nets = {}, {}
    for side in (64, 96):
        nets[side] = build_model("mobilenetv3small", 32, side)
        nets[side].set_weights(best.get_weights())
        raw[side] = recall(embed_cached(nets[side], val_cache, side))
    figures = {}
    for key, side in (("input_size", 64), ("embed_size", 96)):
        figures[side] = check[f"val_{key}"]
        if check[f"whitened_{key}"]:  # the side's own whitening helped there
            assert figures[side]["recall@1"] > raw[side]["recall@1"]
        else:
            assert figures[side] == pytest.approx(raw[side], abs=1e-9)
    kept = figures[96]["recall@1"] > figures[64]["recall@1"]
    side, key = (96, "embed_size") if kept else (64, "input_size")
    assert check["kept"] is kept and row.input_size == side
    assert "inference side 96 (trained at 64): val R@1" in res.stdout
    for fitted_at in (64, 96):
        assert f"whitening: embedding {len(train_split):,} train images at {fitted_at}px to fit it" in res.output
    # the registered network is the side kept, with that side's whitening when it helped, and it
    # reproduces the figure the side was chosen on
    whitening_check = hp["whitening_check"]
    assert whitening_check["size"] == side and whitening_check["kept"] is check[f"whitened_{key}"]
    assert whitening_check["val_raw"] == pytest.approx(raw[side], abs=1e-9)
    assert f"whitening at {side}px: val R@1" in res.stdout
    embedder, _ = registry.load_embedder(None, "sides")  # rebuilt at the registered side, same weights
    assert embedder.input_shape[1] == side
    assert recall(embed_cached(embedder, val_cache, side)) == pytest.approx(figures[side], abs=1e-9)
    assert ("whitening" in [layer.name for layer in embedder.layers]) is check[f"whitened_{key}"]
    if check[f"whitened_{key}"]:  # fitted on the training images at the side kept
        expected = fit_whitening(embed_cached(nets[side], train_cache, side), places=_places(train_split))
        kernel, _ = embedder.get_layer("whitening").get_weights()
        assert np.allclose(kernel, expected.projection, rtol=1e-4, atol=1e-6 * np.abs(kernel).max())
    assert TrainConfig.from_hyperparams(hp).embed_size == 96


@pytest.mark.slow
def test_no_whiten_stores_no_whitening_and_compares_the_sides_raw(imported, cli):
    from geoloc.model.net import build_model
    from geoloc.model.validate import embed_cached, recall_at_k

    args = [a for k, v in {**TINY, "embed_size": 96}.items() for a in (f"--{k.replace('_', '-')}", v)]
    res = cli("train", "--name", "plain", "--no-whiten", *args)
    assert res.exit_code == 0, res.output
    assert "whitening" not in res.stdout
    row = registry.get_model(None, "plain")
    assert row.hyperparams["whiten"] is False and "whitening_check" not in row.hyperparams
    check = row.hyperparams["embed_size_check"]
    assert not check["whitened_input_size"] and not check["whitened_embed_size"]
    best = build_model("mobilenetv3small", 32, 64)
    best.load_weights(Path(row.weights_path))
    val_cache, val = _images("val", True)
    q = val.is_query
    for key, side in (("input_size", 64), ("embed_size", 96)):  # the raw network at each side
        net = build_model("mobilenetv3small", 32, side)
        net.set_weights(best.get_weights())
        emb = embed_cached(net, val_cache, side)
        assert check[f"val_{key}"] == pytest.approx(
            recall_at_k(emb[q], val.location_ids[q], emb[~q], val.location_ids[~q]), abs=1e-9)
    assert row.input_size == (96 if check["kept"] else 64)
    weights = Path(row.weights_path)
    assert weights.name == "best.weights.h5" and not (weights.parent / "whitened.weights.h5").exists()
    embedder, _ = registry.load_embedder(None, "plain")
    assert "whitening" not in [layer.name for layer in embedder.layers]
    assert TrainConfig.from_hyperparams(row.hyperparams).whiten is False


def test_whitening_is_kept_only_when_it_raises_recall_at_1():
    # ten places, each a point in a weak 4-d subspace; every image also carries a strong random nuisance
    # along 4 other directions. Raw cosine similarity is dominated by the nuisance; whitening
    # rescales the directions to unit variance, so the place subspace decides.
    rng = np.random.default_rng(0)
    places = rng.normal(size=(10, 4))

    def images(per_place: int) -> tuple[np.ndarray, np.ndarray]:
        loc = np.repeat(np.arange(10), per_place)
        signal = 0.1 * places[loc] + 0.01 * rng.normal(size=(len(loc), 4))
        return np.hstack([signal, 3.0 * rng.normal(size=(len(loc), 4))]), loc

    fit_x, _ = images(20)
    val_x, loc = images(3)
    is_query = np.tile([True, False, False], 10)
    raw = {"recall@1": _recall1(val_x, loc, is_query)}
    white = {"recall@1": _recall1(fit_whitening(fit_x, shrinkage=0.0).apply(val_x), loc, is_query)}
    assert raw["recall@1"] < 0.5 < white["recall@1"]
    assert keep_if_better(raw, white)[0] is True
    assert keep_if_better(white, raw)[0] is False  # worse: the raw network stays
    assert keep_if_better(raw, dict(raw))[0] is False  # no gain: the raw network stays
    assert keep_if_better({"recall@1": float("nan")}, white)[0] is False
    assert keep_if_better({}, white)[0] is False
