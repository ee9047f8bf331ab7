"""The models table: one row per trained (or training) model, its name rules and its training locks.

Only rows: nothing here loads TensorFlow. Rebuilding a Keras embedder from a row and its weights is
geoloc.model.registry.load_embedder.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from ..errors import AlreadyExists, InputError, NotFound
from . import sqlfiles
from .engine import transaction

LIST_HINT = "see 'geoloc models list'"
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
TAKEN_HINT = "choose another --name, or add --resume to continue its training"
FROZEN_SQLSTATE = "23000"  # integrity_constraint_violation, raised by the models_ready_is_frozen trigger


def check_name(name: str) -> str:
    """NAME if it is a valid model name (NAME_RULE), else InputError naming it.

    A name is only a registry key: weights live in a folder named after the model's id.
    """
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InputError(f"invalid model name {name!r}: use {NAME_RULE}")
    return name


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


def register_model(conn: Connection, name: str, backbone: str, dim: int, input_size: int,
                   hyperparams: dict, weights_path: str | Path | None, *, weights_sha256: str | None = None,
                   train_split: str | None = None, data_counts: dict | None = None,
                   train_seconds: float | None = None, history: list | None = None,
                   metrics: dict | None = None, status: str = "training") -> Row:
    """Insert a model row (the only way one is created); InputError for a bad name, AlreadyExists
    if the name is taken, also by a concurrent transaction (the unique index decides)."""
    check_name(name)
    if conn.execute(sqlfiles.text("model/exists.sql"), {"name": name}).first() is not None:
        raise AlreadyExists(f"model '{name}' already exists", hint=TAKEN_HINT)
    params = {
        "name": name, "backbone": backbone, "dim": dim, "input_size": input_size,
        "hyperparams": _json(hyperparams), "train_split": train_split,
        "data_counts": _json(data_counts or {}), "weights_path": None if weights_path is None else str(weights_path),
        "weights_sha256": weights_sha256, "train_seconds": train_seconds, "history": _json(history or []),
        "metrics": _json(metrics or {}), "status": status,
    }
    try:
        with conn.begin_nested():
            return conn.execute(sqlfiles.text("model/insert.sql"), params).one()
    except sa.exc.IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == "23505":  # unique_violation: another run claimed it first
            raise AlreadyExists(f"model '{name}' already exists", hint=TAKEN_HINT) from None
        raise


def update_model(conn: Connection, name: str, *, hyperparams: dict | None = None, data_counts: dict | None = None,
                 weights_path: str | Path | None = None, weights_sha256: str | None = None,
                 train_seconds: float | None = None, history: list | None = None, metrics: dict | None = None,
                 status: str | None = None, input_size: int | None = None) -> Row:
    """Change the given fields of a registered model (None = unchanged); InputError when the change
    touches what a ready model froze (the database's models_ready_is_frozen trigger refuses it)."""
    params = {
        "name": name, "hyperparams": _json(hyperparams), "data_counts": _json(data_counts),
        "weights_path": None if weights_path is None else str(weights_path), "weights_sha256": weights_sha256,
        "train_seconds": train_seconds, "history": _json(history), "metrics": _json(metrics), "status": status,
        "input_size": input_size,
    }
    try:
        with conn.begin_nested():
            row = conn.execute(sqlfiles.text("model/update.sql"), params).first()
    except sa.exc.IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == FROZEN_SQLSTATE:
            raise InputError(exc.orig.diag.message_primary) from None
        raise
    if row is None:
        raise NotFound(f"model '{name}' not found", hint=LIST_HINT)
    return row


def get_model(conn: Connection | None, name: str) -> Row:
    """The registry row of NAME; NotFound (hint: see 'geoloc models list') otherwise."""
    with transaction(conn) as c:
        row = c.execute(sqlfiles.text("model/get.sql"), {"name": name}).first()
    if row is None:
        raise NotFound(f"model '{name}' not found", hint=LIST_HINT)
    return row


def list_models(conn: Connection | None = None) -> list[Row]:
    """All registered models, newest first (what `geoloc models list` prints)."""
    with transaction(conn) as c:
        return c.execute(sqlfiles.text("model/list.sql")).all()


def show_model(conn: Connection | None, name: str) -> dict:
    """Everything the registry knows about NAME as a JSON-ready dict (what `geoloc models show` prints)."""
    row = get_model(conn, name)
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}


def replace_model(conn: Connection, old_name: str, new_name: str) -> Row:
    """Swap a freshly trained model in: delete OLD_NAME (with its embeddings and evaluations) and
    rename NEW_NAME (which must be ready) to OLD_NAME, both in the caller's one transaction.

    Returns the renamed row (its id is NEW_NAME's). NotFound / InputError (NEW_NAME not ready,
    OLD_NAME being trained right now) change nothing.
    """
    new = conn.execute(sqlfiles.text("model/get_for_update.sql"), {"name": new_name}).first()
    if new is None:
        raise NotFound(f"model '{new_name}' not found", hint=LIST_HINT)
    if new.status != "ready":
        raise InputError(f"model '{new_name}' is not ready (status {new.status}): it cannot replace '{old_name}'")
    if old_name != new_name:
        old = conn.execute(sqlfiles.text("model/get_for_update.sql"), {"name": old_name}).first()
        if old is not None and not conn.execute(sqlfiles.text("model/try_lock_in_transaction.sql"), {
                "lock_class": TRAINING_LOCK_CLASS, "model_id": old.id}).scalar():
            raise busy(old_name)
        conn.execute(sqlfiles.text("model/delete.sql"), {"name": old_name})
        new = conn.execute(sqlfiles.text("model/rename.sql"), {"name": new_name, "new_name": old_name}).one()
    return new


# ---------------------------------------------------------------- one training run per model

# pg_advisory_lock(class, object): this class number marks "a process is training model <id>".
TRAINING_LOCK_CLASS = 0x6765_6F6C  # 'geol'


def try_lock_training(conn: Connection, model_id: int) -> bool:
    """Take the session-level advisory lock of model_id on conn (kept past commits, released when
    the session ends, even by kill -9); False if another session holds it."""
    return bool(conn.execute(sqlfiles.text("model/try_lock.sql"),
                             {"lock_class": TRAINING_LOCK_CLASS, "model_id": model_id}).scalar())


def unlock_training(conn: Connection, model_id: int) -> None:
    conn.execute(sqlfiles.text("model/unlock.sql"), {"lock_class": TRAINING_LOCK_CLASS, "model_id": model_id})


def busy(name: str) -> InputError:
    return InputError(f"model '{name}' is being trained by another process",
                      hint="wait for it to finish; 'geoloc models list' shows its status")


def check_unfinished(name: str, status: str) -> None:
    """InputError unless a model of this status may be trained further (training or failed)."""
    if status == "ready":
        raise InputError(f"model '{name}' is ready: a finished model is never trained again "
                         "(its embeddings were made with these weights); train a new model under another name")


def lock_unfinished(conn: Connection, name: str) -> Row:
    """Take the training lock of model NAME on conn (busy: InputError); its row, re-read under the
    lock and checked to be unfinished. The caller releases it with release_training."""
    row = get_model(conn, name)
    if not try_lock_training(conn, row.id):
        conn.rollback()
        raise busy(name)
    conn.commit()
    try:
        row = get_model(conn, name)  # another run may have finished it before we got the lock
        conn.commit()
        check_unfinished(name, row.status)
    except BaseException:
        release_training(conn, row.id)
        raise
    return row


def release_training(conn: Connection, model_id: int) -> None:
    """Give back what try_lock_training took; a lost session has lost its locks already."""
    try:
        conn.rollback()
        unlock_training(conn, model_id)
        conn.commit()
    except sa.exc.SQLAlchemyError:
        conn.invalidate()
