"""`geoloc train`: P x K batches from the database, multi-similarity loss, checkpoints, registry row.

The global step is the optimizer's own iteration counter, so a checkpoint taken at any moment (end of
epoch, Ctrl-C, time budget) says exactly how far training got; the sampler and the augmentation are
pure functions of (seed, epoch/step), so `--resume` continues with the same batches, the same step
count and the same optimizer state as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from .. import config as settings
from ..db import sqlfiles
from ..db.engine import begin, check
from ..errors import AlreadyExists, ConfigError, InputError, NotFound
from . import registry
from .backbones import BACKBONES, DEFAULT_BACKBONE, backbone_spec
from .net import WEIGHTS_HINT

WEIGHTS_FILE = "best.weights.h5"
CURVE_FILE = "training_curve.png"
CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; stored as the registry row's `hyperparams`.

    Defaults are the CPU setting measured best on two cores.
    """

    backbone: str = DEFAULT_BACKBONE
    input_size: int | None = None    # None: the backbone's default (224; 160 for the CPU default)
    dim: int = 256
    epochs: int = 20
    steps_per_epoch: int = 150
    places: int = 8
    per_place: int = 4
    lr: float = 2e-3
    lr_schedule: str = "cosine"      # "cosine" (linear warm-up, cosine decay to 1 %) or "constant"
    warmup_steps: int = 100
    weight_decay: float = 0.0        # > 0 switches Adam to AdamW
    weights: str = "none"            # "none" | "imagenet" | path of a .keras / .weights.h5 file
    freeze: int = 0
    gem_p: float = 3.0
    trainable_p: bool = False
    bn_momentum: float = 0.9         # applied to every BatchNorm layer, also of imagenet starts
    augment: bool = True
    seed: int = 0
    split: str = "train"
    val_split: str | None = "val"
    versions: list[str] | None = None  # image versions to train on; None = all (v1 and v2)
    include_queries: bool = False
    ms_alpha: float = 2.0
    ms_beta: float = 50.0
    ms_base: float = 0.5
    ms_margin: float = 0.1
    cells: str | None = None         # a cell partition: adds one classification head per level
    cells_partition_id: int | None = None  # the partition's id, recorded when the run starts
    ms_weight: float = 1.0           # loss = ms_weight * multi-similarity + cell_weight * cell cross-entropy
    cell_weight: float = 0.3

    @property
    def batch(self) -> int:
        return self.places * self.per_place

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def __post_init__(self) -> None:
        if self.input_size is None and self.backbone in BACKBONES:
            self.input_size = BACKBONES[self.backbone].default_size

    def check(self) -> None:
        backbone_spec(self.backbone)
        for name in ("input_size", "epochs", "steps_per_epoch", "places", "per_place"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive (got {getattr(self, name)})")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be positive (got {self.lr})")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(f"unknown learning-rate schedule '{self.lr_schedule}' (choose cosine or constant)")
        if self.val_split is not None and self.val_split == self.split:
            raise ConfigError(f"validation split '{self.val_split}' must differ from the training split")

    @classmethod
    def from_hyperparams(cls, hp: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in hp.items() if k in names})


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: a checkpoint was saved first; `--resume` continues from `step`."""

    def __init__(self, name: str, step: int, checkpoint: Path):
        super().__init__(f"model '{name}': interrupted at step {step}, checkpoint saved in {checkpoint}")
        self.name, self.step, self.checkpoint = name, step, checkpoint


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


# ---------------------------------------------------------------- learning rate

@keras.saving.register_keras_serializable(package="geoloc")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to lr over `warmup` steps, then cosine decay to 1 % of lr at `total` steps."""

    def __init__(self, lr: float, warmup: int, total: int):
        self.lr, self.warmup, self.total = float(lr), float(warmup), float(max(total, 1))

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.lr * (step + 1.0) / max(self.warmup, 1.0)
        progress = keras.ops.clip((step - self.warmup) / max(self.total - self.warmup, 1.0), 0.0, 1.0)
        cosine = self.lr * (0.01 + 0.99 * 0.5 * (1.0 + keras.ops.cos(math.pi * progress)))
        return keras.ops.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return {"lr": self.lr, "warmup": self.warmup, "total": self.total}


def _schedule(cfg: TrainConfig):
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return WarmupCosine(cfg.lr, cfg.warmup_steps, cfg.total_steps)


def _current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(run_dir: Path, model, optimizer, state: dict) -> Path:
    """Weights + optimizer variables + run state, swapped in atomically (an old one survives a crash)."""
    tmp, final, old = run_dir / f"{CHECKPOINT_DIR}.tmp", run_dir / CHECKPOINT_DIR, run_dir / f"{CHECKPOINT_DIR}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_weights(tmp / "model.weights.h5")
    np.savez(tmp / "optimizer.npz", *[np.asarray(v.numpy()) for v in optimizer.variables])
    (tmp / "state.json").write_text(json.dumps(registry._finite(state), indent=1))
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / name / "state.json").exists() for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"))


def load_checkpoint(run_dir: Path, model, optimizer) -> dict:
    """Restore what save_checkpoint wrote; InputError naming the folder when there is none."""
    folder = run_dir / CHECKPOINT_DIR
    if not (folder / "state.json").exists() and (run_dir / f"{CHECKPOINT_DIR}.old" / "state.json").exists():
        folder = run_dir / f"{CHECKPOINT_DIR}.old"
    if not (folder / "state.json").exists():
        raise InputError(f"{run_dir / CHECKPOINT_DIR}: no checkpoint to resume from",
                         hint="start a new run under another --name")
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


# ---------------------------------------------------------------- the run

@dataclass
class _Data:
    train: object
    sampler: object
    cache: np.ndarray
    validator: object | None
    counts: dict = field(default_factory=dict)
    cells: object | None = None  # geoloc.model.cell_heads.CellLabels with --cells


def _prepare_data(conn, cfg: TrainConfig) -> _Data:
    from .data import cache_side, decode_cache
    from .sampler import PKSampler, load_split
    from .validate import Validator

    if cfg.split not in ("train", "val", "test") or (cfg.val_split not in (None, "train", "val", "test")):
        raise ConfigError(f"splits must be train, val or test (got '{cfg.split}' and '{cfg.val_split}')")
    train = load_split(conn, cfg.split, cfg.versions, cfg.include_queries)
    if len(train) == 0:
        raise InputError(f"no images in split '{cfg.split}'"
                         + (f" (versions {', '.join(cfg.versions)})" if cfg.versions else ""),
                         hint="import images first: geoloc ingest images DIR")
    sampler = PKSampler(train.place, cfg.places, cfg.per_place, cfg.seed)
    cells = None
    if cfg.cells:  # before the minutes of decoding: an unknown partition fails at once
        from .cell_heads import place_labels

        cells = place_labels(conn, cfg.cells, cfg.cells_partition_id, train.location_ids, sampler.groups)
        cfg.cells_partition_id = cells.partition_id
    side = cache_side(cfg.input_size)
    cache = decode_cache(train.files(), side, progress=f"decoding {cfg.split} images")
    validator = None
    counts = {
        "train_images": len(train),
        "train_places": len(sampler.groups),
        "train_locations": int(len(np.unique(train.location_ids))),
        "skipped_places": sampler.skipped_places,
        "places_filled_with_repeats": sampler.short_places,
        "train_versions": {v: train.versions.count(v) for v in sorted(set(train.versions))},
    }
    if cells is not None:
        counts["cells_per_level"] = cells.sizes
    if cfg.val_split:
        val = load_split(conn, cfg.val_split, None, include_queries=True)
        if not val.is_query.any() or val.is_query.all():
            raise InputError(f"split '{cfg.val_split}' has no query/database images to validate on",
                             hint="import its images first, or pass --val-split none")
        vcache = decode_cache(val.files(), side, progress=f"decoding {cfg.val_split} images")
        validator = Validator(vcache, val.location_ids, val.is_query, cfg.input_size)
        counts.update(validator.counts)
    return _Data(train, sampler, cache, validator, counts, cells)


def train(name: str, config: TrainConfig | None = None, *, resume: bool = False, epochs: int | None = None,
          max_minutes: float | None = None, on_step: Callable[[int, float], None] | None = None,
          progress: bool = True):
    """Train (or with resume=True continue an unfinished run of) model NAME; returns its registry row.

    The row is claimed (unique name) before any file is written, and the run holds the model's
    advisory lock until it ends, so one name is trained by one process at a time. Raises InputError
    for a bad name, AlreadyExists for a taken name without resume, NotFound for resume of an unknown
    name, InputError for resume of a ready model or of one another process is training, and
    Interrupted (a KeyboardInterrupt) after saving a checkpoint when stopped with Ctrl-C.
    """
    started = time.monotonic()
    deadline = None if max_minutes is None else started + 60.0 * max_minutes
    if not resume:
        registry.check_name(name)
        cfg = config or TrainConfig()
        if epochs is not None:
            cfg = replace(cfg, epochs=epochs)
        cfg.check()
        if cfg.weights not in ("none", "imagenet") and not Path(cfg.weights).is_file():
            # fail before minutes of image decoding; the file's contents are checked when loading
            raise InputError(f"{cfg.weights}: weights file not found", hint=WEIGHTS_HINT)
    with begin() as conn:
        taken = conn.execute(sqlfiles.text("model/exists.sql"), {"name": name}).first()
    if resume and taken is None:
        raise NotFound(f"model '{name}' not found: nothing to resume", hint=registry.LIST_HINT)
    if not resume and taken is not None:
        raise AlreadyExists(f"model '{name}' already exists",
                            hint="choose another --name" if taken.status == "ready" else registry.TAKEN_HINT)
    if resume:
        registry.check_unfinished(name, taken.status)

    with check().connect() as lock_conn:  # this session holds the model's lock for the whole run
        locked: list[int] = []
        try:
            run_dir = None
            if resume:
                row = registry.lock_unfinished(lock_conn, name)
                locked.append(row.id)
                cfg = TrainConfig.from_hyperparams(row.hyperparams)
                if epochs is not None:
                    cfg = replace(cfg, epochs=epochs)
                cfg.check()
                run_dir = Path(row.hyperparams.get("run_dir") or models_root() / str(row.id))
            return _run(lock_conn, locked, name, cfg, run_dir, deadline, started, on_step, progress)
        finally:
            if locked:
                registry.release_training(lock_conn, locked[0])


def _claim(lock_conn, locked: list[int], name: str, cfg: TrainConfig, model, data: "_Data") -> tuple[object, Path]:
    """Register NAME (status 'training'), lock it and create its folder <models root>/<id>, in one
    transaction: a name taken meanwhile raises AlreadyExists with nothing written."""
    hyperparams = {**asdict(cfg), "batch": cfg.batch}
    with lock_conn.begin():
        row = registry.register_model(lock_conn, name, cfg.backbone, int(model.output_shape[-1]), cfg.input_size,
                                      hyperparams, None, train_split=cfg.split, data_counts=data.counts)
        if not registry.try_lock_training(lock_conn, row.id):  # a new id: nobody else can hold it
            raise registry.busy(name)
        locked.append(row.id)
        run_dir = new_model_folder(models_root(), row.id, name)
        try:
            registry.update_model(lock_conn, name, hyperparams={**hyperparams, "run_dir": str(run_dir)},
                                  weights_path=run_dir / WEIGHTS_FILE)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    return row, run_dir


def _run(lock_conn, locked, name, cfg, run_dir, deadline, started, on_step, progress):
    """The run itself, under the lock; RUN_DIR is the folder of a resumed model, None for a new one."""
    resume = run_dir is not None
    with begin() as conn:
        data = _prepare_data(conn, cfg)

    import tensorflow as tf

    from .loss import multi_similarity_loss
    from .net import build_model

    continuing = resume and has_checkpoint(run_dir)
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg.backbone, cfg.dim, cfg.input_size, "none" if continuing else cfg.weights,
                        cfg.freeze, cfg.gem_p, cfg.trainable_p, bn_momentum=cfg.bn_momentum)
    heads, tracked = None, model  # tracked: what the optimizer trains and checkpoints hold
    if data.cells is not None:
        from .cell_heads import build_heads

        heads = build_heads(int(model.output_shape[-1]), data.cells.sizes)
        tracked = keras.Model(model.input, [model.output, *heads(model.output)], name="embedder_and_cells")
    schedule = _schedule(cfg)
    if cfg.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=schedule)
    optimizer.build(tracked.trainable_variables)

    if continuing:
        state = load_checkpoint(run_dir, tracked, optimizer)
    else:  # a new run, or one killed before its first checkpoint: start at step 0
        state = {"epoch": 0, "history": [], "best": None, "train_seconds": 0.0, "partial": None,
                 "baseline": data.validator.thumbnail_baseline() if data.validator else None}
    if resume:
        run_dir.mkdir(parents=True, exist_ok=True)  # the model's own folder, named after its id
        with begin() as conn:
            registry.update_model(conn, name, status="training",
                                  hyperparams={**asdict(cfg), "batch": cfg.batch, "run_dir": str(run_dir)})
    else:
        _, run_dir = _claim(lock_conn, locked, name, cfg, model, data)
    if not continuing:
        save_checkpoint(run_dir, tracked, optimizer, {**state, "step": 0})  # resumable at once

    loss_args = dict(alpha=cfg.ms_alpha, beta=cfg.ms_beta, base=cfg.ms_base, margin=cfg.ms_margin)
    train_vars = tracked.trainable_variables
    if heads is not None:
        from .loss import cell_classification_loss

        place_cells = tf.constant(data.cells.place_labels)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            emb = model(x, training=True)
            loss = multi_similarity_loss(emb, y, **loss_args)
            if heads is not None:  # y are sampler places: their cells per level
                loss = cfg.ms_weight * loss + cfg.cell_weight * cell_classification_loss(
                    heads(emb, training=True), tf.gather(place_cells, y))
        optimizer.apply_gradients(zip(tape.gradient(loss, train_vars), train_vars))
        return loss

    run = _Run(name, cfg, model, optimizer, run_dir, data, state, started, progress)
    run.heads, run.tracked = heads, tracked
    previous = _terminate_as_interrupt()
    try:
        run.loop(train_step, deadline, on_step)
    except KeyboardInterrupt:
        ckpt = run.checkpoint()
        raise Interrupted(name, run.step, ckpt) from None
    except BaseException:
        with begin() as conn:
            registry.update_model(conn, name, status="failed", history=run.state["history"])
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return run.finish(run_dir / WEIGHTS_FILE)


def _terminate_as_interrupt():
    """`kill PID` (SIGTERM) saves a checkpoint like Ctrl-C does; returns the handler to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


class _Run:
    """The epoch loop and its bookkeeping (history, best epoch, time spent across resumes)."""

    def __init__(self, name, cfg, model, optimizer, run_dir, data, state, started, progress):
        self.name, self.cfg, self.model, self.optimizer = name, cfg, model, optimizer
        self.run_dir, self.data, self.state, self.started, self.progress = run_dir, data, state, started, progress
        self.val_seconds = 0.0
        self.heads, self.tracked = None, model

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def elapsed(self) -> float:
        return self.state["train_seconds"] + (time.monotonic() - self.started)

    def checkpoint(self) -> Path:
        return save_checkpoint(self.run_dir, self.tracked, self.optimizer,
                               {**self.state, "step": self.step, "train_seconds": self.elapsed()})

    def loop(self, train_step, deadline, on_step) -> None:
        from tqdm import tqdm

        from .data import Augment, training_dataset

        cfg, S = self.cfg, self.cfg.steps_per_epoch
        aug = Augment() if cfg.augment else Augment.none()
        warm = False  # the first step of a session traces the graph: not counted in images/s
        while self.state["epoch"] < cfg.epochs:
            epoch = self.state["epoch"]
            done = self.step - epoch * S
            if done < 0 or done > S:
                raise InputError(f"{self.run_dir / CHECKPOINT_DIR}: step {self.step} does not belong to epoch "
                                 f"{epoch + 1} of {S} steps (was --steps-per-epoch changed?)")
            if (deadline is not None and done == 0 and self.state["history"]
                    and time.monotonic() + self.val_seconds > deadline):
                tqdm.write(f"time budget reached after epoch {epoch}: stopping", file=sys.stderr)
                return
            partial = self.state["partial"] or {"loss_sum": 0.0, "loss_n": 0, "images": 0, "seconds": 0.0}
            self.state["partial"] = partial
            idx, lab = self.data.sampler.epoch(epoch, S)
            ds = training_dataset(self.data.cache, idx[done:], lab[done:], cfg.input_size, cfg.seed,
                                  self.step, aug)
            bar = tqdm(total=S, initial=done, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                       file=sys.stderr, disable=not self.progress, dynamic_ncols=True)
            stopped = False
            t0 = time.monotonic()
            for step, pixels, labels in ds:
                loss = float(train_step(pixels, labels))
                now = time.monotonic()
                partial["loss_sum"] += loss
                partial["loss_n"] += 1
                if warm:
                    partial["images"] += cfg.batch
                    partial["seconds"] += now - t0
                warm, t0 = True, now
                bar.update(1)
                bar.set_postfix(loss=f"{partial['loss_sum'] / partial['loss_n']:.4f}",
                                img_s=f"{partial['images'] / max(partial['seconds'], 1e-9):.1f}")
                if on_step is not None:
                    on_step(int(step) + 1, loss)
                if deadline is not None and now + self.val_seconds > deadline and self.step < (epoch + 1) * S:
                    stopped = True
                    break
            bar.close()
            self._end_epoch(epoch, partial, complete=not stopped)
            if stopped:
                tqdm.write(f"time budget reached at step {self.step}: stopping", file=sys.stderr)
                return

    def _end_epoch(self, epoch: int, partial: dict, complete: bool) -> None:
        entry = {
            "epoch": epoch + 1,
            "steps": self.step - epoch * self.cfg.steps_per_epoch,
            "global_step": self.step,
            "loss": partial["loss_sum"] / max(partial["loss_n"], 1) if partial["loss_n"] else None,
            "lr": _current_lr(self.optimizer),
            "images_per_s": partial["images"] / partial["seconds"] if partial["seconds"] else None,
            "train_s": partial["seconds"],
            "complete": complete,
        }
        if self.data.validator is not None:
            t = time.monotonic()
            entry.update({f"val_{k}": v for k, v in self.data.validator(self.model).items()})
            self.val_seconds = entry["val_s"] = time.monotonic() - t
        if self.state.get("baseline"):
            entry.update({f"thumbnail_val_{k}": v for k, v in self.state["baseline"].items()})
        history = [h for h in self.state["history"] if h["epoch"] != entry["epoch"]] + [entry]
        self.state["history"] = history
        if self._is_best(entry):
            tmp = self.run_dir / f"next.{WEIGHTS_FILE}"
            self.model.save_weights(tmp)
            os.replace(tmp, self.run_dir / WEIGHTS_FILE)  # a kill never leaves half a file
            if self.heads is not None:
                from .cell_heads import save_best

                save_best(self.heads, self.run_dir)
            self.state["best"] = entry
        if complete:
            self.state["epoch"] = epoch + 1
            self.state["partial"] = None
        self.checkpoint()
        from .plots import training_curve

        training_curve(history, self.run_dir / CURVE_FILE, title=f"{self.name} ({self.cfg.backbone})")
        with begin() as conn:
            registry.update_model(conn, self.name, history=history, train_seconds=self.elapsed())
        msg = f"epoch {entry['epoch']}: loss {entry['loss'] if entry['loss'] is not None else float('nan'):.4f}"
        if "val_recall@1" in entry:
            msg += "  val R@1/5/10 " + "/".join(f"{100 * entry[f'val_recall@{k}']:.1f}" for k in (1, 5, 10))
        if self.progress:
            print(msg, file=sys.stderr)

    def _is_best(self, entry: dict) -> bool:
        best = self.state["best"]
        if best is None or "val_recall@1" not in entry:
            return True  # without validation the latest weights are the best we know
        key = lambda h: (h.get("val_recall@1") or 0.0, h.get("val_recall@5") or 0.0)  # noqa: E731
        return key(entry) > key(best)

    def finish(self, weights_path: Path):
        best = self.state["best"] or {}
        metrics = {k: best[k] for k in ("val_recall@1", "val_recall@5", "val_recall@10") if k in best}
        metrics["best_epoch"] = best.get("epoch")
        metrics["steps"] = self.step
        if self.state.get("baseline"):
            metrics.update({f"thumbnail_val_{k}": v for k, v in self.state["baseline"].items()})
        rates = [h["images_per_s"] for h in self.state["history"] if h.get("images_per_s")]
        metrics["images_per_s"] = float(np.mean(rates)) if rates else None
        with begin() as conn:
            if self.heads is not None:  # the best epoch's heads, as rows beside the embedder
                from .cell_heads import HEADS_FILE, store_heads

                self.heads.load_weights(weights_path.parent / HEADS_FILE)
                metrics["cell_heads"] = store_heads(conn, registry.get_model(conn, self.name).id,
                                                    self.data.cells, self.heads)
            return registry.update_model(
                conn, self.name, weights_path=weights_path, weights_sha256=registry.file_sha256(weights_path),
                train_seconds=self.elapsed(), history=self.state["history"], metrics=metrics,
                data_counts=self.data.counts, status="ready")


def save_untrained(name: str, backbone: str = DEFAULT_BACKBONE, dim: int = 256, input_size: int | None = None,
                   seed: int = 0, out: Path | None = None):
    """Register a randomly initialised model (status 'ready'): a fast stand-in for tests and demos.

    Its weights go to <OUT>/<model id>/ (OUT: the models root, <data dir>/models by default); the
    row, the folder and the weights are made in one transaction, so a failure leaves none of them.
    """
    from .net import build_model

    registry.check_name(name)
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
        row = registry.register_model(conn, name, backbone, int(model.output_shape[-1]), input_size,
                                      hyperparams, None, train_seconds=0.0, status="training")
        run_dir = new_model_folder(root, row.id, name)
        try:
            path = run_dir / WEIGHTS_FILE
            model.save_weights(path)
            return registry.update_model(conn, name, hyperparams={**hyperparams, "run_dir": str(run_dir)},
                                         weights_path=path, weights_sha256=registry.file_sha256(path),
                                         status="ready")
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
