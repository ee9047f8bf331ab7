"""A randomly initialised model registered as ready: a fast stand-in for tests and demos."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras

from ..db import models, sqlfiles
from ..db.engine import begin
from ..errors import AlreadyExists
from . import registry
from .folders import WEIGHTS_FILE, models_root, new_model_folder
from .train_config import DEFAULT_BACKBONE


def save_untrained(name: str, backbone: str = DEFAULT_BACKBONE, dim: int = 256, input_size: int | None = None,
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
    root = Path(out).resolve() if out is not None else models_root()
    with begin() as conn:
        row = models.register_model(conn, name, backbone, int(model.output_shape[-1]), input_size,
                                    hyperparams, None, train_seconds=0.0, status="training")
        run_dir = new_model_folder(root, row.id, name)
        try:
            path = run_dir / WEIGHTS_FILE
            model.save_weights(path)
            return models.update_model(conn, name, hyperparams={**hyperparams, "run_dir": str(run_dir)},
                                       weights_path=path, weights_sha256=registry.file_sha256(path),
                                       status="ready")
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
