"""The models table: one row per trained (or training) model, and loading a registered embedder."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Row

from ..db import sqlfiles
from ..db.engine import begin
from ..errors import AlreadyExists, InputError, NotFound

LIST_HINT = "see 'geoloc models list'"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(_finite(value))


def _finite(value: Any) -> Any:
    """NaN/inf are not JSON: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def register_model(conn: Connection, name: str, backbone: str, dim: int, input_size: int,
                   hyperparams: dict, weights_path: str | Path | None, *, weights_sha256: str | None = None,
                   train_split: str | None = None, data_counts: dict | None = None,
                   train_seconds: float | None = None, history: list | None = None,
                   metrics: dict | None = None, status: str = "training") -> Row:
    """Insert a model row; AlreadyExists if the name is taken."""
    if conn.execute(sqlfiles.text("model/exists.sql"), {"name": name}).first() is not None:
        raise AlreadyExists(f"model '{name}' already exists",
                            hint="choose another --name, or add --resume to continue its training")
    return conn.execute(sqlfiles.text("model/insert.sql"), {
        "name": name, "backbone": backbone, "dim": dim, "input_size": input_size,
        "hyperparams": _json(hyperparams), "train_split": train_split,
        "data_counts": _json(data_counts or {}), "weights_path": None if weights_path is None else str(weights_path),
        "weights_sha256": weights_sha256, "train_seconds": train_seconds, "history": _json(history or []),
        "metrics": _json(metrics or {}), "status": status,
    }).one()


def update_model(conn: Connection, name: str, *, hyperparams: dict | None = None, data_counts: dict | None = None,
                 weights_path: str | Path | None = None, weights_sha256: str | None = None,
                 train_seconds: float | None = None, history: list | None = None, metrics: dict | None = None,
                 status: str | None = None) -> Row:
    """Change the given fields of a registered model (None = unchanged)."""
    row = conn.execute(sqlfiles.text("model/update.sql"), {
        "name": name, "hyperparams": _json(hyperparams), "data_counts": _json(data_counts),
        "weights_path": None if weights_path is None else str(weights_path), "weights_sha256": weights_sha256,
        "train_seconds": train_seconds, "history": _json(history), "metrics": _json(metrics), "status": status,
    }).first()
    if row is None:
        raise NotFound(f"model '{name}' not found", hint=LIST_HINT)
    return row


def get_model(conn: Connection | None, name: str) -> Row:
    """The registry row of NAME; NotFound (hint: see 'geoloc models list') otherwise."""
    if conn is None:
        with begin() as c:
            return get_model(c, name)
    row = conn.execute(sqlfiles.text("model/get.sql"), {"name": name}).first()
    if row is None:
        raise NotFound(f"model '{name}' not found", hint=LIST_HINT)
    return row


def list_models(conn: Connection | None = None) -> list[Row]:
    """All registered models, newest first (what `geoloc models list` prints)."""
    if conn is None:
        with begin() as c:
            return list_models(c)
    return conn.execute(sqlfiles.text("model/list.sql")).all()


def show_model(conn: Connection | None, name: str) -> dict:
    """Everything the registry knows about NAME as a JSON-ready dict (what `geoloc models show` prints)."""
    row = get_model(conn, name)
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}


def load_embedder(conn: Connection | None, name: str):
    """(keras.Model, row): the registered model rebuilt from its row and loaded with its weights."""
    from .net import build_model

    row = get_model(conn, name)
    if row.status != "ready" or not row.weights_path:
        raise InputError(f"model '{name}' is not ready (status {row.status})",
                         hint=f"finish its training with 'geoloc train --name {name} --resume'")
    path = Path(row.weights_path)
    if not path.is_file():
        raise InputError(f"{path}: weights file of model '{name}' not found")
    hp = row.hyperparams or {}
    model = build_model(row.backbone, dim=row.dim, input_size=row.input_size, weights="none",
                        gem_p=float(hp.get("gem_p", 3.0)), trainable_p=bool(hp.get("trainable_p", False)))
    try:
        model.load_weights(path)
    except Exception as exc:  # h5/shape errors: the file does not belong to this row
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot load weights of model '{name}' ({first})") from None
    return model, row
