"""Loading a registered embedder: the Keras model rebuilt from its `models` row, with its weights
checked against the sha256 registered when it was trained.

The rows themselves (names, registering, updating, listing, training locks) are geoloc.db.models.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy.engine import Connection

from ..db.models import get_model
from ..errors import InputError



def file_sha256(path: Path) -> str:
    """The sha256 of a weights file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_embedder(conn: Connection | None, name: str):
    """(keras.Model, row): the registered model rebuilt from its row and loaded with its weights,
    after checking the file against the sha256 registered when it was trained."""
    from .net import build_model

    row = get_model(conn, name)
    if row.status != "ready" or not row.weights_path:
        raise InputError(f"model '{name}' is not ready (status {row.status})",
                         hint=f"finish its training with 'geoloc train --name {name} --resume'")
    path = Path(row.weights_path)
    if not path.is_file():
        raise InputError(f"{path}: weights file of model '{name}' not found")
    if not row.weights_sha256:
        raise InputError(f"{path}: weights of model '{name}' have no registered sha256 (they cannot be checked)")
    if file_sha256(path) != row.weights_sha256:
        raise InputError(f"{path}: weights of model '{name}' do not match their registered sha256 "
                         "(the file changed after training)")
    model = build_model(row.backbone, weights="none", **network_args(row))
    try:
        model.load_weights(path)
    except Exception as exc:  # h5/shape errors: the file does not belong to this row
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot load weights of model '{name}' ({first})") from None
    return model, row


def network_args(row) -> dict:
    """The arguments of net.build_model (besides backbone and weights) that rebuild ROW's network.

    A whitened model (hyperparams "whiten", made by `geoloc models whiten`) is its source's network
    (the source's dim, kept in "base_dim") with a whitening of row.dim outputs appended.
    """
    hp = row.hyperparams or {}
    whiten = hp.get("whiten") or {}
    return {"dim": int(whiten.get("base_dim", row.dim)), "input_size": row.input_size,
            "gem_p": float(hp.get("gem_p", 3.0)), "trainable_p": bool(hp.get("trainable_p", False)),
            "whiten_dim": int(row.dim) if whiten else None}
