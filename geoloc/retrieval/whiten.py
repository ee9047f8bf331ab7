"""A whitened model: a registered network followed by the whitening learned on its own embeddings.

`geoloc evaluate --post whiten` applies the whitening (geoloc.retrieval.postprocess) in NumPy to
stored embeddings. `whiten_model` makes it part of a new registered model instead: the source's
network, then a Dense layer holding the whitening (kernel = projection P, bias = -mean @ P) and an
L2 normalisation. Its embedding of an image is `Whitening.apply(the source's embedding)`, so
`geoloc embed`, `geoloc search`, `geoloc serve` and the one-SQL pgvector search use it as any model.

The new model is self-contained: its own weights file (network and whitening) in its own folder,
sha256 registered, rebuilt by registry.load_embedder from its row (hyperparams "whiten").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..db.engine import begin
from ..errors import AlreadyExists, InputError, NotFound
from ..splits import SPLITS
from ..model.whitening import DEFAULT_WHITEN_DIMS, DEFAULT_WHITEN_SHRINKAGE, WHITEN_METHOD, Whitening
from . import postprocess as post
from .baseline import THUMBNAIL_BACKBONE
from .evaluate import WHITEN_FIT_SPLIT, fit_split_whitening, require_embedded, split_counts, split_embeddings

DEFAULT_FIT_SPLIT = WHITEN_FIT_SPLIT  # the same split `geoloc evaluate --post whiten` fits on
CHECK_TOLERANCE = 1e-3  # largest difference allowed between the network's output and Whitening.apply
OPTIONS = {"whiten_dims": "--dims", "whiten_shrinkage": "--shrinkage"}  # PostParams field -> option


@dataclass
class Whitened:
    row: object  # the new model's registry row (ready)
    source: object  # the source model's registry row
    whitening: Whitening
    fit_split: str
    fit_count: int
    seconds: float


def whiten_model(source: str, name: str, dims: int | None = DEFAULT_WHITEN_DIMS,
                 shrinkage: float = DEFAULT_WHITEN_SHRINKAGE, split: str = DEFAULT_FIT_SPLIT,
                 out: Path | None = None) -> Whitened:
    """Register NAME, a ready model: SOURCE's network followed by the whitening fitted on SOURCE's
    stored embeddings of SPLIT and their places (every image of the split must have an embedding),
    keeping DIMS directions (None: all) with SHRINKAGE (see geoloc.model.whitening.fit_whitening).

    Its weights go to <OUT>/<model id>/ (OUT: the models root, <data dir>/models by default); the
    row, the folder and the weights are made in one transaction, so a failure leaves none of them.
    InputError / NotFound / AlreadyExists (one line, nothing written) for a bad name or parameter, a
    taken name, a missing or unfinished source, or a split without (all) its embeddings.
    """
    from ..db.models import check_name

    started = time.monotonic()
    check_name(name)
    _check_params(dims, shrinkage, split)
    with begin() as conn:
        _check_free(conn, name)
        src = _source_row(conn, source)
        fit_x, places = _fit_embeddings(conn, src, split)
    whitening = fit_split_whitening(source, split, fit_x, places, dims, shrinkage)
    network = _whitened_network(source, src, whitening)
    row = _register(network, name, src, whitening, dims, shrinkage, split, len(fit_x), out,
                    time.monotonic() - started)
    return Whitened(row, src, whitening, split, len(fit_x), time.monotonic() - started)


def _check_params(dims: int | None, shrinkage: float, split: str) -> None:
    problems = post.PostParams(whiten_dims=dims, whiten_shrinkage=shrinkage).problems()
    if problems:
        field, value, rule = problems[0]
        raise InputError(f"{OPTIONS[field]} {value}: {rule}")
    if split not in SPLITS:
        raise InputError(f"--split {split!r}: must be one of {', '.join(SPLITS)}")


def _check_free(conn, name: str) -> None:
    from ..db.models import get_model

    try:
        get_model(conn, name)
    except NotFound:
        return
    raise AlreadyExists(f"model '{name}' already exists", hint="choose another --name")


def _source_row(conn, source: str):
    """SOURCE's row if it is a ready network that is not whitened already; errors otherwise."""
    from ..db.models import get_model

    row = get_model(conn, source)
    if row.backbone == THUMBNAIL_BACKBONE:
        raise InputError(f"model '{source}' is the thumbnail baseline: only a trained network can be whitened")
    if row.status != "ready":
        raise InputError(f"model '{source}' is not ready (status {row.status}): only a finished model can be "
                         "whitened", hint=f"finish its training with 'geoloc train --name {source} --resume'")
    whiten = (row.hyperparams or {}).get("whiten") or {}
    made_from = whiten.get("from") or {}
    if made_from:
        raise InputError(f"model '{source}' is whitened already (from model '{made_from.get('name')}')",
                         hint=f"whiten '{made_from.get('name')}' instead")
    if whiten:
        raise InputError(f"model '{source}' is whitened already (its training kept the whitening it learned)")
    return row


def _fit_embeddings(conn, row, split: str) -> tuple[np.ndarray, np.ndarray]:
    """ROW's embeddings of every image of SPLIT and their places; errors when the split has no images or
    some lack one."""
    counts = split_counts(conn, row.id, split, None)
    if counts.images == 0:
        raise NotFound(f"split {split} has no images: the whitening is fitted on its embeddings",
                       hint="import them with 'geoloc ingest images DIR', or fit on another --split")
    require_embedded(row, counts, split, None, why=": the whitening is fitted on them")
    return split_embeddings(conn, row.id, row.dim, split)


def _whitened_network(source: str, src, whitening: Whitening):
    """SOURCE's network (its weights checked against their sha256) with WHITENING appended."""
    from ..model.net import whitened_network
    from ..model.registry import load_embedder, network_args

    src_net, loaded = load_embedder(None, source)
    if loaded.id != src.id:
        raise InputError(f"model '{source}' was replaced while it was being whitened: run again")
    net = whitened_network(src_net, src.backbone, whitening, **network_args(src))
    _check_equivalence(src_net, net, whitening)
    return net


def _check_equivalence(src_net, net, whitening: Whitening) -> None:
    """The new network's output is Whitening.apply of the source's, on a couple of pixel arrays."""
    size = int(src_net.input_shape[1])
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    expected = whitening.apply(src_net.predict(pixels, verbose=0))
    got = net.predict(pixels, verbose=0)
    if got.shape != expected.shape or not np.allclose(got, expected, atol=CHECK_TOLERANCE):
        raise RuntimeError("the whitened network does not compute the whitening of its source's embeddings")


def _register(net, name: str, src, whitening: Whitening, dims: int | None, shrinkage: float, split: str,
              fit_count: int, out: Path | None, seconds: float):
    from ..model.folders import store_ready_model

    hp_src = src.hyperparams or {}
    hyperparams = {
        "backbone": src.backbone, "input_size": src.input_size, "gem_p": float(hp_src.get("gem_p", 3.0)),
        "trainable_p": bool(hp_src.get("trainable_p", False)),
        "whiten": {"from": {"name": src.name, "id": src.id}, "method": WHITEN_METHOD, "base_dim": src.dim,
                   "dims": whitening.dims,
                   "dims_requested": dims, "shrinkage": shrinkage, "fit_split": split, "fit_count": fit_count},
    }
    with begin() as conn:
        try:
            return store_ready_model(conn, name, net, src.backbone, whitening.dims, src.input_size, hyperparams,
                                     out, train_split=src.train_split, train_seconds=seconds)
        except AlreadyExists:  # taken meanwhile by another process
            raise AlreadyExists(f"model '{name}' already exists", hint="choose another --name") from None
