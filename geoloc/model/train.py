"""`geoloc train`: P x K batches from the database, multi-similarity loss, checkpoints, registry row.

The global step is the optimizer's own iteration counter, so a checkpoint taken at any moment (end of
epoch, Ctrl-C, time budget) says exactly how far training got; the sampler and the augmentation are
pure functions of (seed, epoch/step), so `--resume` continues with the same batches, the same step
count and the same optimizer state as an uninterrupted run. How many steps a run takes is its plan
(geoloc.model.schedule): fixed by --epochs, or fitted to the clock with --max-minutes. Unless --ema is 0
the optimizer also keeps a moving average of the weights, its momentum warming up with the step count
(ema_momentum): each epoch validates the average (BatchNorm's statistics stay the last step's), and
the best epoch's average is what the run keeps.

Nothing here prints: `train` reports through PROGRESS(kind, info), which the CLI renders:
"decoding" {split, images}; "plan" {the plan, seconds_left}; "epoch" {epoch, epochs, steps, done};
"step" {step, epoch_step, loss, images_per_s}; "epoch_end" {the history entry}; "stopped" {step, reason};
"whitening_fit" {split, images, size} (once per side); "embed_size" {kept, reason, input_size, embed_size,
val_input_size, val_embed_size, whitened_input_size, whitened_embed_size}; "whitening" {kept, reason,
val_raw, val_whitened, ...} for the side kept.

At the end two choices are validated on the best weights, each kept only if it raises val Recall@1
(geoloc.model.validate.keep_if_better): the inference side, TrainConfig.embed_size instead of the
training input size (the weights do not depend on the side; the registered input_size is the side
kept), and (TrainConfig.whiten, on by default) the learned whitening (geoloc.model.whitening) fitted on
the training images' embeddings and places (location + heading). Each side is scored with its own
whitening where that helps there, so the side is chosen on the figures the model will have. When the whitening is kept, the model's weights
become the network with the whitening as its last layers, written to whitened.weights.h5 beside the
raw best weights (best.weights.h5, which a resumed run refits from). The model is marked ready only
after these steps, so a run killed during them redoes them on `--resume`.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from ..db import sqlfiles
from ..db.engine import begin, check
from ..errors import AlreadyExists, ConfigError, InputError, NotFound
from ..db import models as rows
from . import registry
from .checkpoint import CHECKPOINT_DIR, has_checkpoint, load_checkpoint, load_sampler, save_checkpoint
from .folders import CURVE_FILE, WEIGHTS_FILE, models_root, new_model_folder
from .net import WEIGHTS_HINT
from .schedule import (PLAN_AFTER_STEPS, Plan, WarmupCosine, current_lr, make_schedule, restore, retarget,
                       steps_that_fit)
from .train_config import TrainConfig
from .train_data import TrainData, prepare_data
from .untrained import save_untrained

__all__ = ["CHECKPOINT_DIR", "CURVE_FILE", "WEIGHTS_FILE", "Interrupted", "Plan", "TrainConfig", "WarmupCosine",
           "has_checkpoint", "load_checkpoint", "models_root", "new_model_folder", "save_checkpoint",
           "save_untrained", "train"]

Progress = Callable[[str, dict], None]
INFERENCE_SPEEDUP = 3.0  # validation images/s per training images/s, assumed until an epoch end is measured
EPOCH_END_OVERHEAD_S = 1.0  # checkpoint, curve and registry row of an epoch end, assumed until measured
WHITENED_WEIGHTS_FILE = "whitened.weights.h5"  # the best epoch's network + whitening, when it is kept


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: a checkpoint was saved first; `--resume` continues from `step`."""

    def __init__(self, name: str, step: int, checkpoint: Path):
        super().__init__(f"model '{name}': interrupted at step {step}, checkpoint saved in {checkpoint}")
        self.name, self.step, self.checkpoint = name, step, checkpoint


def _silent(kind: str, info: dict) -> None:
    pass


def train(name: str, config: TrainConfig | None = None, *, resume: bool = False, epochs: int | None = None,
          max_minutes: float | None = None, on_step: Callable[[int, float], None] | None = None,
          progress: Progress | None = None):
    """Train (or with resume=True continue an unfinished run of) model NAME; returns its registry row.

    EPOCHS replaces the config's epoch count (with resume: a new total to train up to). Without
    MAX_MINUTES the run takes epochs x steps_per_epoch steps (20 epochs when no count is given).
    With MAX_MINUTES the step count is planned from the measured speed so that the warm-up + cosine
    schedule ends, validated and registered, when the budget (counted from this call) is spent; an
    epoch count is then an upper bound. Resuming without MAX_MINUTES finishes the stored plan.

    The row is claimed (unique name) before any file is written, and the run holds the model's
    advisory lock until it ends, so one name is trained by one process at a time. Raises InputError
    for a bad name, AlreadyExists for a taken name without resume, NotFound for resume of an unknown
    name, InputError for resume of a ready model or of one another process is training, and
    Interrupted (a KeyboardInterrupt) after saving a checkpoint when stopped with Ctrl-C or SIGTERM.
    """
    started = time.monotonic()
    if max_minutes is not None and max_minutes < 0:
        raise ConfigError(f"max-minutes must not be negative (got {max_minutes:g})")
    deadline = None if max_minutes is None else started + 60.0 * max_minutes
    report = progress if callable(progress) else _silent
    if not resume:
        rows.check_name(name)
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
        raise NotFound(f"model '{name}' not found: nothing to resume", hint=rows.LIST_HINT)
    if not resume and taken is not None:
        raise AlreadyExists(f"model '{name}' already exists",
                            hint="choose another --name" if taken.status == "ready" else rows.TAKEN_HINT)
    if resume:
        rows.check_unfinished(name, taken.status)

    with check().connect() as lock_conn:  # this session holds the model's lock for the whole run
        locked: list[int] = []
        try:
            run_dir = None
            if resume:
                row = rows.lock_unfinished(lock_conn, name)
                locked.append(row.id)
                cfg = TrainConfig.from_hyperparams(row.hyperparams)
                if epochs is not None:
                    cfg = replace(cfg, epochs=epochs)
                cfg.check()
                run_dir = Path(row.hyperparams.get("run_dir") or models_root() / str(row.id))
            session = _Session(started, deadline, epochs is not None, on_step, report)
            return _run(lock_conn, locked, name, cfg, run_dir, session)
        finally:
            if locked:
                rows.release_training(lock_conn, locked[0])


class _Session:
    """What one call of `train` brings: its clock, its budget and its callbacks."""

    def __init__(self, started, deadline, new_epochs, on_step, report):
        self.started, self.deadline, self.new_epochs = started, deadline, new_epochs
        self.on_step, self.report = on_step, report


def _hyperparams(cfg: TrainConfig, plan: Plan, run_dir: Path | None = None) -> dict:
    hp = {**asdict(cfg), "batch": cfg.batch, "plan": plan.as_dict()}
    return hp if run_dir is None else {**hp, "run_dir": str(run_dir)}


def _claim(lock_conn, locked: list[int], name: str, cfg: TrainConfig, plan: Plan, model,
           data: TrainData) -> tuple[object, Path]:
    """Register NAME (status 'training'), lock it and create its folder <models root>/<id>, in one
    transaction: a name taken meanwhile raises AlreadyExists with nothing written."""
    with lock_conn.begin():
        row = rows.register_model(lock_conn, name, cfg.backbone, int(model.output_shape[-1]), cfg.input_size,
                                  _hyperparams(cfg, plan), None, train_split=cfg.split, data_counts=data.counts)
        if not rows.try_lock_training(lock_conn, row.id):  # a new id: nobody else can hold it
            raise rows.busy(name)
        locked.append(row.id)
        run_dir = new_model_folder(models_root(), row.id, name)
        try:
            rows.update_model(lock_conn, name, hyperparams=_hyperparams(cfg, plan, run_dir),
                              weights_path=run_dir / WEIGHTS_FILE)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    return row, run_dir


def _run(lock_conn, locked, name, cfg, run_dir, session: _Session):
    """The run itself, under the lock; RUN_DIR is the folder of a resumed model, None for a new one."""
    resume = run_dir is not None
    with begin() as conn:
        data = prepare_data(conn, cfg, session.report)

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
    plan = Plan(cfg.max_steps or cfg.total_steps, cfg.steps_per_epoch)
    schedule = make_schedule(cfg.lr, cfg.lr_schedule, cfg.warmup_steps, plan)
    ema = dict(use_ema=True, ema_momentum=cfg.ema) if cfg.ema > 0 else {}
    if cfg.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay, **ema)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=schedule, **ema)
    optimizer.build(tracked.trainable_variables)
    if cfg.ema > 0:  # a TF variable, read by the optimizer's update and set by each step; not checkpointed
        optimizer.ema_momentum = tf.Variable(cfg.ema, trainable=False, dtype=tf.float32)

    if continuing:
        state = load_checkpoint(run_dir, tracked, optimizer)
        if data.proxies is not None:
            try:
                data.proxies.load(load_sampler(run_dir))
            except ValueError as exc:  # the training split changed since the checkpoint
                raise InputError(f"{run_dir / CHECKPOINT_DIR}: {exc}",
                                 hint="start a new run under another --name") from None
    else:  # a new run, or one killed before its first checkpoint: start at step 0
        state = {"epoch": 0, "history": [], "best": None, "train_seconds": 0.0, "partial": None,
                 "baseline": data.validator.thumbnail_baseline() if data.validator else None}
    if state.get("plan"):  # the stored plan, with the schedule's state where it stopped
        plan = Plan.from_dict(state["plan"])
        restore(plan, schedule)
    step = int(optimizer.iterations.numpy())
    plan.timed = session.deadline is not None
    if session.new_epochs or (plan.timed and cfg.max_steps is not None and plan.total_steps > cfg.max_steps):
        retarget(plan, schedule, step, cfg.max_steps)  # --epochs given: the new total (a cap with a budget)
    if resume:
        run_dir.mkdir(parents=True, exist_ok=True)  # the model's own folder, named after its id
        with begin() as conn:
            rows.update_model(conn, name, status="training", hyperparams=_hyperparams(cfg, plan, run_dir))
    else:
        _, run_dir = _claim(lock_conn, locked, name, cfg, plan, model, data)
    if not continuing:
        save_checkpoint(run_dir, tracked, optimizer, {**state, "step": 0, "plan": plan.as_dict()})  # resumable at once

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
        if cfg.ema > 0:
            optimizer.ema_momentum.assign(ema_momentum(optimizer.iterations, cfg.ema))
        optimizer.apply_gradients(zip(tape.gradient(loss, train_vars), train_vars))
        return loss, emb

    run = _Run(name, cfg, model, optimizer, schedule, plan, run_dir, data, state, session)
    run.heads, run.tracked = heads, tracked
    previous = _terminate_as_interrupt()
    try:
        run.loop(train_step)
        run.finishing = True  # from here the model holds the best weights: the last checkpoint stays as it is
        return run.finish(run_dir / WEIGHTS_FILE)  # the whitening step included: not ready before it ends
    except KeyboardInterrupt:
        ckpt = run_dir / CHECKPOINT_DIR if run.finishing else run.checkpoint()
        raise Interrupted(name, run.step, ckpt) from None
    except BaseException:
        with begin() as conn:
            rows.update_model(conn, name, status="failed", history=run.state["history"])
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def ema_momentum(step, ceiling: float):
    """The moving average's momentum at optimizer step STEP (0 = the first): (1 + step) / (10 + step), at
    most CEILING, as tf.train.ExponentialMovingAverage's num_updates does; a short run then averages its
    last steps instead of keeping its first ones (at 0.998 from step 4,490 on). Keras starts the average
    at the first step's weights whatever the momentum."""
    import tensorflow as tf

    step = tf.cast(step, tf.float32)
    return tf.minimum(tf.constant(ceiling, tf.float32), (1.0 + step) / (10.0 + step))


def _terminate_as_interrupt():
    """`kill PID` (SIGTERM) saves a checkpoint like Ctrl-C does; returns the handler to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


class _Run:
    """The epoch loop and its bookkeeping (history, best epoch, plan, time spent across resumes)."""

    def __init__(self, name, cfg, model, optimizer, schedule, plan, run_dir, data, state, session: _Session):
        self.name, self.cfg, self.model, self.optimizer = name, cfg, model, optimizer
        self.schedule, self.plan, self.run_dir, self.data, self.state = schedule, plan, run_dir, data, state
        self.session, self.report = session, session.report
        self.val_seconds = 0.0
        self.finish_s = 0.0  # seconds kept free for the final steps (inference side, whitening)
        self.epoch_end_s: float | None = None  # measured duration of this session's latest epoch end
        self.timed_steps, self.timed_seconds = 0, 0.0  # this session's steps after the traced first one
        self.heads, self.tracked = None, model
        self.finishing = False

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def elapsed(self) -> float:
        return self.state["train_seconds"] + (time.monotonic() - self.session.started)

    def checkpoint(self) -> Path:
        proxies = self.data.proxies
        return save_checkpoint(self.run_dir, self.tracked, self.optimizer,
                               {**self.state, "step": self.step, "train_seconds": self.elapsed(),
                                "plan": self.plan.as_dict()}, None if proxies is None else proxies.arrays())

    def _over_budget(self, now: float) -> bool:
        deadline = self.session.deadline
        return deadline is not None and now + self.val_seconds + self.finish_s > deadline

    def _finish_estimate(self, seconds_per_step: float) -> float:
        """Seconds the final steps will take at inference speed: at the training side and at the inference
        side tried (pixels scale the time), the validation images embedded raw and, with the whitening,
        the training images to fit it and the validation images again to validate it."""
        cfg, validator = self.cfg, self.data.validator
        if validator is None or self.heads is not None:
            return 0.0
        if self.val_seconds and len(validator.cache):
            per_image = self.val_seconds / len(validator.cache)
        else:
            per_image = seconds_per_step / cfg.batch / INFERENCE_SPEEDUP
        pixels = 1.0 + ((cfg.embed_size / cfg.input_size) ** 2 if cfg.embed_size != cfg.input_size else 0.0)
        images = len(validator.cache)  # each side validated raw
        if cfg.whiten:  # and whitened, after embedding the training images at that side
            images += len(self.data.cache) + len(validator.cache)
        return images * per_image * pixels

    def loop(self, train_step) -> None:
        from .data import Augment, training_dataset

        cfg, S = self.cfg, self.cfg.steps_per_epoch
        aug = Augment.scaled(cfg.augment)
        warm = False  # the first step of a session traces the graph: not counted in images/s
        while self.step < self.plan.total_steps:
            epoch = self.state["epoch"]
            done = self.step - epoch * S
            if done < 0 or done > S:
                raise InputError(f"{self.run_dir / CHECKPOINT_DIR}: step {self.step} does not belong to epoch "
                                 f"{epoch + 1} of {S} steps (was --steps-per-epoch changed?)")
            if done == 0 and self.state["history"] and self._over_budget(time.monotonic()):
                self.report("stopped", {"step": self.step, "reason": f"time budget reached after epoch {epoch}"})
                return
            partial = self.state["partial"] or {"loss_sum": 0.0, "loss_n": 0, "images": 0, "seconds": 0.0}
            self.state["partial"] = partial
            proxies = self.data.proxies
            similar = None if proxies is None else proxies.pools(self.data.sampler.location_of_place,
                                                                   self.data.sampler.pool_size)
            idx, lab = self.data.sampler.epoch(epoch, S, similar)
            ds = training_dataset(self.data.cache, idx[done:], lab[done:], cfg.input_size, cfg.seed,
                                  self.step, aug)
            self.report("epoch", {"epoch": epoch + 1, "epochs": self.plan.epochs, "done": done,
                                  "steps": min(S, self.plan.total_steps - epoch * S)})
            stopped = False
            t0 = time.monotonic()
            for step, pixels, labels in ds:
                loss, emb = train_step(pixels, labels)
                loss = float(loss)
                if proxies is not None:
                    proxies.add(labels.numpy(), emb.numpy())
                now = time.monotonic()
                partial["loss_sum"] += loss
                partial["loss_n"] += 1
                if warm:
                    partial["images"] += cfg.batch
                    partial["seconds"] += now - t0
                    self.timed_steps += 1
                    self.timed_seconds += now - t0
                warm, t0 = True, now
                self.report("step", {"step": self.step, "epoch_step": self.step - epoch * S,
                                     "loss": partial["loss_sum"] / partial["loss_n"],
                                     "images_per_s": partial["images"] / max(partial["seconds"], 1e-9)})
                if self.session.on_step is not None:
                    self.session.on_step(int(step) + 1, loss)
                if self.plan.timed and self.timed_steps == PLAN_AFTER_STEPS:
                    self._replan(now)
                if self.step >= self.plan.total_steps:
                    break
                if self._over_budget(now) and self.step < (epoch + 1) * S:
                    stopped = True
                    break
            self._end_epoch(epoch, partial, complete=not stopped)
            if stopped:
                self.report("stopped", {"step": self.step, "reason": f"time budget reached at step {self.step}"})
                return
            if self.plan.timed and self.timed_steps and self.step < self.plan.total_steps:
                self._replan(time.monotonic())

    def _replan(self, now: float) -> None:
        """Plan the step count that fits before the deadline, from this session's measured speed."""
        seconds_per_step = self.timed_seconds / self.timed_steps
        epoch_end = self.epoch_end_s
        if epoch_end is None:  # no epoch end measured yet: validation at a guessed inference speed
            val_images = len(self.data.validator.cache) if self.data.validator is not None else 0
            epoch_end = EPOCH_END_OVERHEAD_S + val_images * seconds_per_step / self.cfg.batch / INFERENCE_SPEEDUP
        self.finish_s = self._finish_estimate(seconds_per_step)
        seconds_left = self.session.deadline - now - self.finish_s
        total = steps_that_fit(self.step, seconds_left, seconds_per_step, epoch_end, self.cfg.steps_per_epoch,
                               self.cfg.max_steps)
        retarget(self.plan, self.schedule, self.step, total)
        self.plan.images_per_s = self.cfg.batch / seconds_per_step
        self.plan.epoch_end_s = epoch_end
        self.plan.planned_at_step = self.step
        self.plan.plans += 1
        self.report("plan", {**self.plan.as_dict(), "seconds_left": seconds_left})

    def _end_epoch(self, epoch: int, partial: dict, complete: bool) -> None:
        t_end = time.monotonic()
        entry = {
            "epoch": epoch + 1,
            "steps": self.step - epoch * self.cfg.steps_per_epoch,
            "global_step": self.step,
            "loss": partial["loss_sum"] / max(partial["loss_n"], 1) if partial["loss_n"] else None,
            "lr": current_lr(self.optimizer),
            "images_per_s": partial["images"] / partial["seconds"] if partial["seconds"] else None,
            "train_s": partial["seconds"],
            "complete": complete,
            "planned_steps": self.plan.total_steps,
        }
        with self._averaged():
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
            if self.data.proxies is not None:  # the next epoch's batches are drawn by these
                self.data.proxies.commit()
        self.checkpoint()
        from .plots import training_curve

        training_curve(history, self.run_dir / CURVE_FILE, title=f"{self.name} ({self.cfg.backbone})")
        with begin() as conn:
            rows.update_model(conn, self.name, history=history, train_seconds=self.elapsed(),
                              hyperparams=_hyperparams(self.cfg, self.plan, self.run_dir))
        self.epoch_end_s = time.monotonic() - t_end
        self.report("epoch_end", entry)

    @contextmanager
    def _averaged(self):
        """The moving average of the weights in the network while the block runs (cfg.ema), the trained
        weights back afterwards: the checkpoint keeps both, the best-weights file the average."""
        if not self.optimizer.use_ema:
            yield
            return
        variables = self.tracked.trainable_variables
        raw = [v.numpy() for v in variables]
        for v, average in zip(variables, self.optimizer._model_variables_moving_average):
            v.assign(average)
        try:
            yield
        finally:
            for v, value in zip(variables, raw):
                v.assign(value)

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
        metrics["plan"] = self.plan.as_dict()
        hyperparams = _hyperparams(self.cfg, self.plan, self.run_dir)
        if self.can_validate:
            self.model.load_weights(weights_path)  # the best epoch's network, for the choices below
        size, check = self.choose(hyperparams, weights_path)
        if check is not None:
            hyperparams["whiten"] = check if check["kept"] else False
            hyperparams["whitening_check"] = check
            if check["kept"]:
                weights_path = weights_path.with_name(check["weights_file"])
        with begin() as conn:
            if self.heads is not None:  # the best epoch's heads, as rows beside the embedder
                from .cell_heads import HEADS_FILE, store_heads

                self.heads.load_weights(weights_path.parent / HEADS_FILE)
                metrics["cell_heads"] = store_heads(conn, rows.get_model(conn, self.name).id,
                                                    self.data.cells, self.heads)
            return rows.update_model(
                conn, self.name, input_size=size, weights_path=weights_path,
                weights_sha256=registry.file_sha256(weights_path), train_seconds=self.elapsed(),
                history=self.state["history"], metrics=metrics, data_counts=self.data.counts,
                hyperparams=hyperparams, status="ready")

    @property
    def can_validate(self) -> bool:
        """Whether choices made after training can be validated: a validation split, no cell heads."""
        return self.data.validator is not None and self.heads is None

    def _skip_reason(self, heads_reason: str) -> str | None:
        """Why a choice made after training cannot be validated here (None: it can)."""
        if self.can_validate:
            return None
        return "no validation split to check it on" if self.data.validator is None else heads_reason

    def choose(self, hyperparams: dict, weights_path: Path) -> tuple[int, dict | None]:
        """The choices after training, on the best weights (in self.model): the inference side (cfg.embed_size
        instead of the training side) and, with cfg.whiten, the whitening. Each side is scored with its own
        whitening where that raises val Recall@1 there, so the side is chosen on the figures the model will
        have; the larger side is kept only if it raises val Recall@1 over the training side ("embed_size_check"
        in HYPERPARAMS when it was tried). The kept whitening is written beside WEIGHTS_PATH. Returns (the side
        kept, the whitening check of that side or None without cfg.whiten)."""
        from .net import copy_network
        from .validate import keep_if_better

        cfg = self.cfg
        sides = [cfg.input_size] + ([cfg.embed_size] if cfg.embed_size != cfg.input_size else [])
        side_check = {"kept": False, "input_size": cfg.input_size, "embed_size": cfg.embed_size}
        side_check["reason"] = self._skip_reason("the cell heads are trained on the training side's embeddings")
        if side_check["reason"] is not None:
            if len(sides) > 1:
                hyperparams["embed_size_check"] = side_check
                self.report("embed_size", side_check)
            return cfg.input_size, self._no_whitening()
        tried = {}
        for size in sides:
            network = self.model if size == cfg.input_size else copy_network(
                self.model, cfg.backbone, dim=int(self.model.output_shape[-1]), input_size=size, gem_p=cfg.gem_p,
                trainable_p=cfg.trainable_p)
            tried[size] = self._score_side(network, size)
        size = cfg.input_size
        if len(sides) > 1:
            for key, side in (("input_size", cfg.input_size), ("embed_size", cfg.embed_size)):
                side_check[f"val_{key}"] = tried[side]["figures"]
                side_check[f"whitened_{key}"] = tried[side]["whitened"] is not None
            side_check["kept"], side_check["reason"] = keep_if_better(side_check["val_input_size"],
                                                                      side_check["val_embed_size"])
            hyperparams["embed_size_check"] = side_check
            self.report("embed_size", side_check)
            if side_check["kept"]:
                size = cfg.embed_size
        check, whitened = tried[size]["check"], tried[size]["whitened"]
        if whitened is not None:  # a new file: the raw best weights stay where a resumed run refits from
            path = weights_path.with_name(WHITENED_WEIGHTS_FILE)
            tmp = path.with_name(f"next.{path.name}")
            whitened.save_weights(tmp)
            os.replace(tmp, path)  # a kill never leaves half a file
            check["weights_file"] = path.name
        if check is not None:
            self.report("whitening", check)
        return size, check

    def _no_whitening(self) -> dict | None:
        """The whitening check of a run that cannot validate it (None without cfg.whiten), reported."""
        if not self.cfg.whiten:
            return None
        check = {"kept": False, "fit_split": self.cfg.split, "fit_count": len(self.data.cache),
                 "reason": self._skip_reason("the cell heads are trained on the raw embedding")}
        self.report("whitening", check)
        return check

    def _score_side(self, network, size: int) -> dict:
        """NETWORK (the best weights at SIZE) on the validation images, raw and, with cfg.whiten, with the
        learned whitening fitted on the training images' embeddings at SIZE and their places:
        {"figures": the better of the two by val Recall@1, "check": the whitening's decision or None,
        "whitened": the whitened network when it is the better, else None}."""
        from .net import whitened_network
        from .validate import embed_cached, keep_if_better
        from .whitening import DEFAULT_WHITEN_DIMS, DEFAULT_WHITEN_SHRINKAGE, WHITEN_METHOD, fit_whitening

        cfg, validator = self.cfg, self.data.validator
        raw = validator(network, size)
        if not cfg.whiten:
            return {"figures": raw, "check": None, "whitened": None}
        check = {"kept": False, "fit_split": cfg.split, "fit_count": len(self.data.cache), "size": size,
                 "method": WHITEN_METHOD}
        self.report("whitening_fit", {"split": cfg.split, "images": len(self.data.cache), "size": size})
        base_dim = int(network.output_shape[-1])
        try:
            whitening = fit_whitening(embed_cached(network, self.data.cache, size), places=self.data.train.place)
        except ValueError as exc:
            check["reason"] = f"cannot fit: {exc}"
            return {"figures": raw, "check": check, "whitened": None}
        # both figures measured on the networks themselves: the whitened one computes in float32, which is
        # what embedding will do with it
        net = whitened_network(network, cfg.backbone, whitening, dim=base_dim, input_size=size,
                               gem_p=cfg.gem_p, trainable_p=cfg.trainable_p)
        check["val_raw"], check["val_whitened"] = raw, validator(net, size)
        kept, check["reason"] = keep_if_better(check["val_raw"], check["val_whitened"])
        if kept and whitening.dims != base_dim:  # the registered dim stays the network's
            kept, check["reason"] = False, f"it keeps {whitening.dims} of {base_dim} dimensions"
        check.update(kept=kept, base_dim=base_dim, dims=whitening.dims, dims_requested=DEFAULT_WHITEN_DIMS,
                     shrinkage=DEFAULT_WHITEN_SHRINKAGE)
        if kept:
            return {"figures": check["val_whitened"], "check": check, "whitened": net}
        return {"figures": raw, "check": check, "whitened": None}
