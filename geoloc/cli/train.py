"""`geoloc train`: train a retrieval model from the images in the database."""

from __future__ import annotations

import sys

import click

from ..errors import ConfigError
from ..model.train_config import (BATCHES, DEFAULT_DIM, DEFAULT_EPOCHS, LR_SCHEDULES, MAX_AUGMENT,
                                  PRETRAINED_BN_MOMENTUM, SCRATCH_BN_MOMENTUM, TrainConfig)

COMMANDS = ["train"]
_D = TrainConfig  # the defaults --help shows are the run configuration's own

# options that define a run; with --resume the stored values are used and these must not be given
_RUN_OPTIONS = ("backbone", "input_size", "embed_size", "dim", "steps_per_epoch", "batch", "places", "per_place",
                "batches", "lr", "lr_schedule", "warmup_steps", "weight_decay", "ema", "weights", "freeze", "gem_p",
                "trainable_p", "bn_momentum", "augment", "seed", "split", "val_split", "versions", "include_queries",
                "cells", "ms_weight", "ms_alpha", "ms_beta", "ms_base", "ms_margin", "cell_weight", "whiten")


def _config(opts: dict):
    cfg = {k: v for k, v in opts.items() if v is not None and k in TrainConfig.__dataclass_fields__}
    per_place = opts["per_place"] or TrainConfig.per_place
    if opts["places"] is not None and opts["batch"] is not None and opts["places"] * per_place != opts["batch"]:
        raise ConfigError(f"--batch {opts['batch']} is not --places {opts['places']} x --per-place {per_place}")
    if opts["places"] is None and opts["batch"] is not None:
        if opts["batch"] % per_place:
            raise ConfigError(f"--batch {opts['batch']} is not a multiple of --per-place {per_place}")
        cfg["places"] = opts["batch"] // per_place
    if opts["val_split"] is not None and opts["val_split"].lower() == "none":
        cfg["val_split"] = None
    if opts["versions"] is not None:
        cfg["versions"] = [v.strip() for v in opts["versions"].split(",") if v.strip()] or None
    return TrainConfig(**cfg)


@click.command()
@click.option("--name", required=True, help="Unique model name: 1-64 letters, digits, '.', '_' or '-' (weights go "
              "to <data dir>/models/<model id>).")
@click.option("--backbone", help="mobilenetv3small (CPU default), mobilenetv3large, efficientnetb0 or resnet50.")
@click.option("--input-size", type=int, help="Square input side in pixels while training [224; 192 for "
              "mobilenetv3small].")
@click.option("--embed-size", type=int, help="Input side tried for embedding after training, kept (as the model's "
              "input size) only if it raises val Recall@1 [320 for mobilenetv3small at 192 (5/3 of "
              "--input-size, a multiple of 32); --input-size for the others].")
@click.option("--dim", type=int, help=f"Embedding dimension after the projection (0: no projection) [{DEFAULT_DIM}].")
@click.option("--epochs", type=int, help=f"Epochs [{DEFAULT_EPOCHS}]. With --max-minutes an upper bound (without "
              "--epochs: as many as fit). With --resume: a new total to train up to.")
@click.option("--steps-per-epoch", type=int, help=f"Batches per epoch [{_D.steps_per_epoch}].")
@click.option("--batch", type=int, help=f"Images per batch = places x per-place [{_D.places * _D.per_place}].")
@click.option("--places", type=int, help=f"P: places (location + heading) per batch [{_D.places}].")
@click.option("--per-place", type=int, help=f"K: images of each place per batch [{_D.per_place}].")
@click.option("--batches", type=click.Choice(BATCHES),
              help="How a batch's places are chosen: nearby (one place and P - 1 of the nearest "
                   "places of other locations: harder negatives), similar (the same by the places' mean "
                   f"embeddings of the previous epochs, anywhere), or random [{_D.batches}].")
@click.option("--lr", type=float, help=f"Peak learning rate of Adam [{_D.lr:g}].")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES),
              help=f"Warm-up + cosine, or constant [{_D.lr_schedule}].")
@click.option("--warmup-steps", type=int, help=f"Linear warm-up steps of the cosine schedule [{_D.warmup_steps}].")
@click.option("--weight-decay", type=float, help=f"AdamW weight decay (0: plain Adam) [{_D.weight_decay:g}].")
@click.option("--ema", type=float, help=f"Momentum of a moving average of the weights, validated and kept instead "
              f"of the weights themselves (0: off) [{_D.ema:g}].")
@click.option("--weights", help="none (from scratch), imagenet (Keras download) or a .keras/.weights.h5 file "
              f"[{_D.weights}].")
@click.option("--freeze", type=int, help=f"Freeze the first N backbone layers [{_D.freeze}].")
@click.option("--gem-p", type=float, help=f"GeM exponent [{_D.gem_p:g}].")
@click.option("--trainable-p/--fixed-p", default=None, help="Learn the GeM exponent "
              f"[{'trainable' if _D.trainable_p else 'fixed'}].")
@click.option("--bn-momentum", type=float, help="BatchNorm momentum while training "
              f"[{SCRATCH_BN_MOMENTUM} with --weights none, {PRETRAINED_BN_MOMENTUM} with pretrained weights].")
@click.option("--augment", type=float, help="Strength of the random crop + colour jitter (never flips), a multiple "
              "of the mild default: 0 none, 2 twice its crop range and jitter; "
              f"at most {MAX_AUGMENT} [{_D.augment:g}].")
@click.option("--seed", type=int, help=f"Seed of initialisation, sampler and augmentation [{_D.seed}].")
@click.option("--split", help=f"Split to train on [{_D.split}].")
@click.option("--val-split", help=f"Split to validate on each epoch, or 'none' [{_D.val_split}].")
@click.option("--versions", help="Comma-separated image versions to train on (e.g. v1) [all].")
@click.option("--include-queries/--exclude-queries", default=None, help="Train on the newest image of each place "
              "too (the one evaluation queries with), or leave it out as the original project did "
              f"[{'include' if _D.include_queries else 'exclude'}].")
@click.option("--cells", help="Cell partition (geoloc cells build): add a classification head per level [none].")
@click.option("--cell-weight", type=float, help=f"Weight of the cells' cross-entropy in the loss [{_D.cell_weight:g}].")
@click.option("--ms-weight", type=float, help=f"Weight of the multi-similarity loss [{_D.ms_weight:g}].")
@click.option("--ms-alpha", type=float, help=f"Multi-similarity loss: scale of the positive pairs [{_D.ms_alpha:g}].")
@click.option("--ms-beta", type=float, help=f"Multi-similarity loss: scale of the negative pairs [{_D.ms_beta:g}].")
@click.option("--ms-base", type=float, help="Multi-similarity loss: the cosine similarity positives are pulled above "
              f"and negatives pushed below [{_D.ms_base:g}; GSV-Cities uses 0 with --ms-alpha 1].")
@click.option("--ms-margin", type=float, help="Multi-similarity miner: a pair takes part when it is within this "
              f"margin of the hardest pair of the other kind [{_D.ms_margin:g}].")
@click.option("--whiten/--no-whiten", default=None, help="At the end, learn a whitening from the training split's "
              "embeddings and places, and keep it in the model if it raises val Recall@1 "
              f"[{'on' if _D.whiten else 'off'}].")
@click.option("--resume", is_flag=True, help="Continue the unfinished run NAME from its last checkpoint (same steps, "
              "optimizer state); a ready model is never trained again.")
@click.option("--max-minutes", type=float, help="Time budget: after the first steps the speed is measured and the "
              "step count planned so that warm-up + cosine end (validated, registered) when it is spent.")
def train(name: str, resume: bool, epochs: int | None, max_minutes: float | None, **opts) -> None:
    """Train a place-recognition embedder on the database's images (P x K batches, multi-similarity loss).

    Claims NAME in the registry first (one process per name: a second one stops at once), then
    checkpoints every epoch (and on Ctrl-C) into <data dir>/models/<model id>; validates
    Recall@1/5/10 on the validation split in inference mode; keeps the best epoch's weights and
    marks the model ready (from then on its weights never change).

    At the end the best weights are validated at the training side and at --embed-size, each with a
    whitening learned on the training split's embeddings at that side (unless --no-whiten) and
    kept there only if it raises val Recall@1; --embed-size becomes the model's input side only if
    its figure beats the training side's.

    Length: --epochs alone trains exactly that many epochs (20 without either option). With
    --max-minutes the speed is measured after the first steps and the step count planned (and
    re-planned after each epoch) so that warm-up + cosine end when the budget is spent; --epochs is
    then an upper bound, and the last epoch may be shorter. --resume without --max-minutes finishes
    the stored plan.

    Example: geoloc train --name mnv3s --epochs 20 --max-minutes 30
    """
    if resume:
        given = [k for k in _RUN_OPTIONS if opts.get(k) is not None]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ConfigError(f"{flags}: cannot change with --resume (the run keeps its stored settings); "
                              "only --epochs and --max-minutes can")
        cfg = None
    else:
        cfg = _config(opts)
    from ..model.train import Interrupted
    from ..model.train import train as run_training
    from ..model.train_progress import ProgressView, choice_lines

    progress = ProgressView()
    try:
        row = run_training(name, cfg, resume=resume, epochs=epochs, max_minutes=max_minutes, progress=progress)
    except Interrupted as exc:
        progress.close()
        click.echo(f"Interrupted: {exc}", err=True)
        click.echo(f"Hint: continue with 'geoloc train --name {name} --resume'", err=True)
        sys.exit(130)
    finally:
        progress.close()
    m = row.metrics or {}

    def pct(prefix: str) -> str:
        return "/".join(f"{100 * m[f'{prefix}@{k}']:.1f}" for k in (1, 5, 10) if m.get(f"{prefix}@{k}") is not None)

    recall, base = pct("val_recall"), pct("thumbnail_val_recall")
    trained_at = (row.hyperparams or {}).get("input_size", row.input_size)
    side = f"{row.input_size}px" + (f" (trained at {trained_at}px)" if trained_at != row.input_size else "")
    click.echo(f"model '{row.name}' ready: {row.backbone} {side} dim {row.dim}, "
               f"{m.get('steps')} steps in {row.train_seconds / 60:.1f} min")
    if recall:
        click.echo(f"best epoch {m.get('best_epoch')}: val Recall@1/5/10 {recall} %"
                   + (f" (16x16 thumbnails: {base} %)" if base else ""))
    for line in choice_lines(row.hyperparams):
        click.echo(line)
    click.echo(f"weights: {row.weights_path} (sha256 {row.weights_sha256[:12]}...)")
    if m.get("cell_heads"):
        click.echo(f"cell heads: {m['cell_heads']} cells of partition '{row.hyperparams.get('cells')}' (table model_cells)")
