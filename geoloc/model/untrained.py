"""A randomly initialised model registered as ready: a fast stand-in for tests and demos."""

from __future__ import annotations

from pathlib import Path

import keras

from ..db import models, sqlfiles
from ..db.engine import begin
from ..errors import AlreadyExists
from .folders import store_ready_model
from .train_config import DEFAULT_BACKBONE, DEFAULT_DIM


def save_untrained(name: str, backbone: str = DEFAULT_BACKBONE, dim: int = DEFAULT_DIM, input_size: int | None = None,
                   seed: int = 0, out: Path | None = None):
    """Register a randomly initialised model (status 'ready').

    Its weights go to <OUT>/<model id>/ (OUT: the models root, <data dir>/models by default); the
    row, the folder and the weights are made in one transaction, so a failure leaves none of them.
    """
    from .net import build_model

    models.check_name(name)
    with begin() as conn:
        if conn.execute(sqlfiles.text("model/exists.sql"), {"name": name}).first() is not None:
            raise AlreadyExists(f"model '{name}' already exists", hint="choose another name")
    keras.utils.set_random_seed(seed)
    model = build_model(backbone, dim, input_size, "none")
    input_size = int(model.input_shape[1])  # None above: the backbone's default
    hyperparams = {"backbone": backbone, "dim": dim, "input_size": input_size, "seed": seed, "weights": "none",
                   "gem_p": 3.0, "trainable_p": False, "untrained": True}
    with begin() as conn:
        return store_ready_model(conn, name, model, backbone, int(model.output_shape[-1]), input_size,
                                 hyperparams, out, train_seconds=0.0)
