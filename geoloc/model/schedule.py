"""The learning-rate schedule and the plan of how many steps a run takes.

Without a time budget a run takes `epochs x steps_per_epoch` steps. With one (`--max-minutes`) the
step count follows the clock: after PLAN_AFTER_STEPS timed steps (the first step of a session traces
the graph and is not timed) the run measures its seconds per step and plans the largest step count
whose steps and epoch ends (validation, checkpoint) fit before the deadline; it plans again after
every epoch end, with the epoch end's own duration measured. `--epochs` is then an upper bound.

The cosine part of the schedule is a function of a progress q in [0, 1] that moves linearly from an
anchor (step s0, progress q0) to the planned total; a new plan re-anchors at the current step and
progress, so the learning rate never jumps, only the speed of the decay changes, and the schedule
always ends at 1 % of the peak on the last planned step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import keras

PLAN_AFTER_STEPS = 10   # timed steps measured before the first plan of a session
RESERVE = 0.03          # share of the time left kept free for jitter (a busy machine slows down)
FINAL_FACTOR = 0.01     # the cosine ends at 1 % of the peak learning rate


@keras.saving.register_keras_serializable(package="geoloc")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to lr over `warmup` steps, then cosine decay to 1 % of lr at `total` steps.

    `anchor_step`/`anchor_progress` (default: warm-up end, 0) and `total` are variables, so a plan
    made while training takes effect in the already traced training step.
    """

    def __init__(self, lr: float, warmup: int, total: int, anchor_step: float | None = None,
                 anchor_progress: float = 0.0):
        self.lr, self.warmup = float(lr), float(warmup)
        self.total = keras.Variable(float(max(total, 1)), trainable=False, dtype="float32", name="lr_total")
        self.anchor_step = keras.Variable(float(warmup if anchor_step is None else anchor_step), trainable=False,
                                          dtype="float32", name="lr_anchor_step")
        self.anchor_progress = keras.Variable(float(anchor_progress), trainable=False, dtype="float32",
                                              name="lr_anchor_progress")

    def _progress(self, step):
        s0, q0 = self.anchor_step, self.anchor_progress
        span = keras.ops.maximum(self.total - s0, 1.0)
        return keras.ops.clip(q0 + (1.0 - q0) * (step - s0) / span, 0.0, 1.0)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.lr * (step + 1.0) / max(self.warmup, 1.0)
        q = self._progress(step)
        cosine = self.lr * (FINAL_FACTOR + (1.0 - FINAL_FACTOR) * 0.5 * (1.0 + keras.ops.cos(math.pi * q)))
        return keras.ops.where(step < self.warmup, warm, cosine)

    def replan(self, step: int, total: int) -> None:
        """End the cosine at TOTAL instead, continuing from STEP's learning rate (no jump)."""
        total = max(int(total), int(step))
        if step > self.warmup:
            q = float(self._progress(keras.ops.cast(step, "float32")))
            self.anchor_progress.assign(q)
            self.anchor_step.assign(float(step))
        self.total.assign(float(max(total, 1)))

    def get_config(self):
        return {"lr": self.lr, "warmup": self.warmup, "total": float(self.total.numpy()),
                "anchor_step": float(self.anchor_step.numpy()), "anchor_progress": float(self.anchor_progress.numpy())}


@dataclass
class Plan:
    """How many steps the run takes and, for a time budget, what that was planned from."""

    total_steps: int
    steps_per_epoch: int
    timed: bool = False                 # True: planned from the clock (--max-minutes)
    images_per_s: float | None = None   # training speed measured for the latest plan
    epoch_end_s: float | None = None    # seconds of one epoch end (validation, checkpoint, ...) assumed
    planned_at_step: int | None = None
    plans: int = 0                      # how many plans the clock made
    anchor_step: float | None = None    # where the cosine's current stretch starts (schedule state)
    anchor_progress: float = 0.0

    @property
    def epochs(self) -> int:
        return -(-self.total_steps // self.steps_per_epoch)

    def as_dict(self) -> dict:
        return {**asdict(self), "epochs": self.epochs}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def epoch_ends(step: int, total: int, steps_per_epoch: int) -> int:
    """Epoch ends still to come when at STEP (the epochs before it ended) and stopping at TOTAL."""
    if total <= step and step % steps_per_epoch == 0:
        return 0
    return -(-max(total, step) // steps_per_epoch) - step // steps_per_epoch


def steps_that_fit(step: int, seconds_left: float, seconds_per_step: float, epoch_end_s: float,
                   steps_per_epoch: int, max_steps: int | None = None) -> int:
    """The largest total step count N >= STEP whose remaining steps and epoch ends take at most
    SECONDS_LEFT (less the reserve); capped at MAX_STEPS; STEP itself when not even one more fits."""
    budget = seconds_left * (1.0 - RESERVE)

    def cost(total: int) -> float:
        return (total - step) * seconds_per_step + epoch_ends(step, total, steps_per_epoch) * epoch_end_s

    lo = step
    hi = step + int(max(budget, 0.0) / max(seconds_per_step, 1e-9)) + 1
    if max_steps is not None:
        hi = min(hi, max(max_steps, step))
    while lo < hi:  # cost is non-decreasing in the total: the last total that fits
        mid = (lo + hi + 1) // 2
        if cost(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


def make_schedule(lr: float, lr_schedule: str, warmup_steps: int, plan: Plan):
    """The optimizer's learning rate: a constant, or a WarmupCosine at the plan's current state."""
    if lr_schedule == "constant":
        return float(lr)
    return WarmupCosine(lr, warmup_steps, plan.total_steps, plan.anchor_step, plan.anchor_progress)


def retarget(plan: Plan, schedule, step: int, total: int) -> None:
    """Make TOTAL (at least STEP) the run's step count; the schedule ends there, continuously."""
    plan.total_steps = max(int(total), int(step))
    if isinstance(schedule, WarmupCosine):
        schedule.replan(step, plan.total_steps)
        plan.anchor_step = float(schedule.anchor_step.numpy())
        plan.anchor_progress = float(schedule.anchor_progress.numpy())


def restore(plan: Plan, schedule) -> None:
    """Put a stored plan's state (a checkpoint's) into a freshly built schedule."""
    if isinstance(schedule, WarmupCosine):
        schedule.total.assign(float(max(plan.total_steps, 1)))
        schedule.anchor_step.assign(float(schedule.warmup if plan.anchor_step is None else plan.anchor_step))
        schedule.anchor_progress.assign(float(plan.anchor_progress))
