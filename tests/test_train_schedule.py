"""The step plan and the learning-rate schedule: values by hand, continuity of a new plan, a run that
follows the clock, a training subprocess stopped with SIGTERM and resumed, and a CLI error that
loads no TensorFlow."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from geoloc.db import models as db_models
from geoloc.model.schedule import WarmupCosine, epoch_ends, steps_that_fit
from geoloc.model.train import TrainConfig, train
from test_model_training import TINY, imported, subset  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def lr_at(schedule, step: int) -> float:
    return float(schedule(step))


def test_schedule_warmup_end_middle_and_end_by_hand():
    lr = WarmupCosine(0.1, warmup=10, total=110)
    # warm-up: 0.1 * (step + 1) / 10; cosine: 0.1 * (0.01 + 0.99 * (1 + cos(pi * (step - 10) / 100)) / 2)
    assert lr_at(lr, 0) == pytest.approx(0.01, rel=1e-5)
    assert lr_at(lr, 9) == pytest.approx(0.1, rel=1e-5)       # end of warm-up: the peak
    assert lr_at(lr, 10) == pytest.approx(0.1, rel=1e-5)      # start of the cosine: still the peak
    assert lr_at(lr, 60) == pytest.approx(0.0505, rel=1e-5)   # half way: 0.1 * (0.01 + 0.495)
    assert lr_at(lr, 110) == pytest.approx(0.001, rel=1e-5)   # the end: 1 % of the peak
    assert lr_at(lr, 500) == pytest.approx(0.001, rel=1e-5)


def test_a_new_plan_keeps_the_learning_rate_continuous_and_ends_at_the_new_total():
    lr = WarmupCosine(0.1, warmup=4, total=104)
    assert lr_at(lr, 54) == pytest.approx(0.0505, rel=1e-5)   # progress 50/100
    lr.replan(54, 204)
    assert lr_at(lr, 54) == pytest.approx(0.0505, rel=1e-5)   # no jump
    # from progress 0.5 at step 54 to 1 at step 204: step 129 is at 0.75
    expected = 0.1 * (0.01 + 0.99 * 0.5 * (1 + math.cos(0.75 * math.pi)))
    assert expected == pytest.approx(0.0154982, rel=1e-5)
    assert lr_at(lr, 129) == pytest.approx(expected, rel=1e-5)
    assert lr_at(lr, 204) == pytest.approx(0.001, rel=1e-5)
    # shorter again: from step 129 (progress 0.75) the cosine ends at 139
    lr.replan(129, 139)
    assert lr_at(lr, 129) == pytest.approx(expected, rel=1e-5)
    assert lr_at(lr, 139) == pytest.approx(0.001, rel=1e-5)


def test_a_plan_made_during_warmup_moves_only_the_end():
    lr = WarmupCosine(0.1, warmup=10, total=1000)
    lr.replan(5, 50)
    assert lr_at(lr, 5) == pytest.approx(0.06, rel=1e-5)
    assert lr_at(lr, 10) == pytest.approx(0.1, rel=1e-5)
    assert lr_at(lr, 30) == pytest.approx(0.0505, rel=1e-5)   # half way from 10 to 50
    assert lr_at(lr, 50) == pytest.approx(0.001, rel=1e-5)


def test_steps_that_fit_by_hand():
    # 200 s left, 3 % kept in reserve: 194 s; 1 s per step, 10 s per epoch end, 50 steps per epoch:
    # 154 steps + 4 epoch ends = 194 s fits, 155 steps + 4 ends = 195 s does not
    assert steps_that_fit(0, 200.0, 1.0, 10.0, 50) == 154
    assert steps_that_fit(0, 200.0, 1.0, 10.0, 50, max_steps=120) == 120  # --epochs caps it
    # at step 60 (epoch 2 under way), 50 s left: 48.5 s; 38 steps + 1 epoch end = 48 s
    assert steps_that_fit(60, 50.0, 1.0, 10.0, 50) == 98
    assert steps_that_fit(60, 5.0, 1.0, 10.0, 50) == 60  # not one more step fits
    assert [epoch_ends(60, n, 50) for n in (60, 100, 101)] == [1, 1, 2]
    assert epoch_ends(100, 100, 50) == 0


def test_bad_cli_option_fails_without_loading_tensorflow(tmp_path):
    code = ("import sys\n"
            "from geoloc.cli import main\n"
            "main(['train', '--name', 'm', '--batch', '30'], standalone_mode=False)\n"
            "print('tensorflow loaded:', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GEOLOC_DATA_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "Error: --batch 30 is not a multiple of --per-place 4\n"
    assert res.stdout == "tensorflow loaded: False False\n"


@pytest.mark.slow
def test_a_time_budget_plans_a_finished_schedule(imported):
    cfg = TrainConfig(**{**TINY, "epochs": None, "steps_per_epoch": 20, "warmup_steps": 5, "val_split": None})
    seen = []
    row = train("clock", cfg, max_minutes=1.0, progress=lambda kind, info: seen.append((kind, dict(info))))
    assert row.status == "ready"
    plan = row.hyperparams["plan"]
    assert plan["timed"] and plan["plans"] >= 1 and plan["images_per_s"] > 0
    assert plan == row.metrics["plan"]
    steps, total = row.metrics["steps"], plan["total_steps"]
    assert steps > 11  # it planned after 10 timed steps and went on
    assert plan["epochs"] == math.ceil(total / 20) and len(row.history) == math.ceil(steps / 20)
    last = row.history[-1]
    planned = last["planned_steps"]
    # the plan after the last epoch is the one it ran under, unless a re-plan there found no time
    # for another epoch and ended the run where it stood
    assert last["global_step"] == steps and (planned == total or total == steps < planned), (steps, planned, total)
    plans = [info for kind, info in seen if kind == "plan"]
    assert plans and plans[-1]["total_steps"] == total
    assert [kind for kind, _ in seen].count("epoch_end") == len(row.history)
    # The plan follows the wall clock, which a busy machine makes uneven: the run either finished the
    # plan of its last epoch, ending at the bottom of the cosine (1 % of lr 1e-3), or that plan was a
    # little too optimistic and the deadline stopped it close to the end, where the cosine is already
    # low. A fixed 20-epoch schedule cut by the same budget would stop with the rate still near its peak.
    if steps == planned:
        assert last["complete"] and last["lr"] == pytest.approx(1e-5, rel=1e-3)
    else:
        assert steps >= 0.8 * planned and last["lr"] < 0.15e-3, (steps, planned, last["lr"])


@pytest.mark.slow
def test_sigterm_to_a_training_process_checkpoints_and_resume_finishes(imported, cli):
    args = ["train", "--name", "term", "--input-size", "64", "--dim", "32", "--epochs", "4", "--steps-per-epoch",
            "5", "--places", "4", "--per-place", "4", "--lr", "1e-3", "--warmup-steps", "1", "--seed", "3",
            "--val-split", "none"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "geoloc", *args], stderr=subprocess.PIPE, text=True, env=env)
    err = []
    try:
        for line in proc.stderr:
            err.append(line)
            if "epoch 1: loss" in line:  # the first epoch ended: training is under way
                proc.send_signal(signal.SIGTERM)
                break
        err.extend(proc.stderr)
        assert proc.wait(timeout=120) == 130, "".join(err)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(err)
    found = re.search(r"Interrupted: model 'term': interrupted at step (\d+), checkpoint saved in (\S+)\n", text)
    assert found, text
    assert "Hint: continue with 'geoloc train --name term --resume'" in text
    step, ckpt = int(found[1]), Path(found[2])
    assert 5 <= step < 20 and json.loads((ckpt / "state.json").read_text())["step"] == step
    assert db_models.get_model(None, "term").status == "training"
    res = cli("train", "--name", "term", "--resume")
    assert res.exit_code == 0, res.output
    row = db_models.get_model(None, "term")
    assert row.status == "ready" and row.metrics["steps"] == 20
    assert [h["global_step"] for h in row.history] == [5, 10, 15, 20]
    assert row.history[-1]["lr"] == pytest.approx(1e-5, rel=1e-3)
