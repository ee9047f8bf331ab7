"""Where a model's files live: <data dir>/models/<model id>/, named after the id, never the name."""

from __future__ import annotations

from pathlib import Path

from .. import config as settings
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
