"""Where a model's files live: <data dir>/models/<model id>/, named after the id, never the name."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import config as settings
from ..db import models
from ..errors import InputError

WEIGHTS_FILE = "best.weights.h5"
CURVE_FILE = "training_curve.png"


def models_root() -> Path:
    """The folder of every model's own folder: <data dir>/models."""
    return (settings.data_dir() / "models").resolve()


def new_model_folder(root: Path, model_id: int, name: str) -> Path:
    """Create ROOT/<model id> for a just-registered model; never reuses a folder (a name is never a path)."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / str(int(model_id))
    try:
        folder.mkdir()
    except FileExistsError:
        raise InputError(f"{folder}: folder for new model '{name}' (id {model_id}) already exists",
                         hint="another database shares this data dir: give each its own GEOLOC_DATA_DIR") from None
    return folder


def store_ready_model(conn, name: str, network, backbone: str, dim: int, input_size: int, hyperparams: dict,
                      out: Path | None = None, **row):
    """Register NAME, write NETWORK's weights into its new folder under OUT (default models_root()) and
    mark it ready with their sha256, inside CONN's transaction: if anything fails the folder is removed
    and the transaction takes the row with it. ROW: further columns of the row (train_seconds, ...)."""
    from .registry import file_sha256

    root = Path(out).resolve() if out is not None else models_root()
    created = models.register_model(conn, name, backbone, dim, input_size, hyperparams, None, status="training", **row)
    run_dir = new_model_folder(root, created.id, name)
    try:
        path = run_dir / WEIGHTS_FILE
        network.save_weights(path)
        return models.update_model(conn, name, hyperparams={**hyperparams, "run_dir": str(run_dir)},
                                   weights_path=path, weights_sha256=file_sha256(path), status="ready")
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
