"""Training checkpoints: weights, optimizer variables and the run's state (history, plan, ...).

A checkpoint is written to a new folder and swapped in by renames, so a kill at any moment leaves
either the new or the previous one readable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..db.models import _finite
from ..errors import InputError

CHECKPOINT_DIR = "checkpoint"


SAMPLER_FILE = "sampler.npz"  # the sampler's own state, where it has one (geoloc.model.proxies)


def save_checkpoint(run_dir: Path, model, optimizer, state: dict, sampler: dict | None = None) -> Path:
    """Weights + optimizer variables + run state (+ the SAMPLER's arrays), swapped in atomically (an old
    one survives a crash)."""
    tmp, final, old = run_dir / f"{CHECKPOINT_DIR}.tmp", run_dir / CHECKPOINT_DIR, run_dir / f"{CHECKPOINT_DIR}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_weights(tmp / "model.weights.h5")
    np.savez(tmp / "optimizer.npz", *[np.asarray(v.numpy()) for v in optimizer.variables])
    if sampler is not None:
        np.savez(tmp / SAMPLER_FILE, **sampler)
    (tmp / "state.json").write_text(json.dumps(_finite(state), indent=1))
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / name / "state.json").exists() for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"))


def _folder(run_dir: Path) -> Path:
    folder = run_dir / CHECKPOINT_DIR
    if not (folder / "state.json").exists() and (run_dir / f"{CHECKPOINT_DIR}.old" / "state.json").exists():
        folder = run_dir / f"{CHECKPOINT_DIR}.old"
    if not (folder / "state.json").exists():
        raise InputError(f"{run_dir / CHECKPOINT_DIR}: no checkpoint to resume from",
                         hint="start a new run under another --name")
    return folder


def load_checkpoint(run_dir: Path, model, optimizer) -> dict:
    """Restore what save_checkpoint wrote; InputError naming the folder when there is none."""
    folder = _folder(run_dir)
    model.load_weights(folder / "model.weights.h5")
    optimizer.build(model.trainable_variables)
    saved = np.load(folder / "optimizer.npz")
    values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    if len(values) != len(optimizer.variables):
        raise InputError(f"{folder}: optimizer state does not match the model ({len(values)} vs "
                         f"{len(optimizer.variables)} variables)")
    for var, value in zip(optimizer.variables, values):
        var.assign(value)
    return json.loads((folder / "state.json").read_text())


def load_sampler(run_dir: Path) -> dict[str, np.ndarray]:
    """The sampler's arrays of the checkpoint load_checkpoint reads (empty when it saved none)."""
    path = _folder(run_dir) / SAMPLER_FILE
    if not path.exists():
        return {}
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}
