"""The model registry can be trusted: names are never paths, weights are checked when loaded, a
ready model never changes, one process trains a model, a retrain swaps only when the new model is
ready, and a training killed with SIGKILL resumes to the same end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from geoloc import demo
from geoloc.collect.locations import ingest_locations
from geoloc.db import models
from geoloc.db.engine import begin
from geoloc.errors import InputError, NotFound
from geoloc.imagery.importer import ingest_images
from geoloc.model.registry import file_sha256, load_embedder
from geoloc.model.train import TrainConfig, save_untrained
from retrieval_data import VAL_FOLDER, copy_locations
from test_model_training import TINY, imported, subset  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
NAME_ERROR = "use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
TINY_ARGS = ["--input-size", "64", "--dim", "32", "--places", "4", "--per-place", "4", "--lr", "1e-3",
             "--warmup-steps", "1", "--seed", "3", "--val-split", "none"]


@pytest.fixture
def data_dir(db_url, tmp_path, monkeypatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(data))
    return data


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def _add_embeddings_and_evaluation(engine, model_id: int, dim: int) -> None:
    """Two embedding rows and one evaluation for a model, written directly with SQL."""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO embeddings (model_id, image_id, embedding) "
                             "SELECT :m, id, CAST(array_fill(0.5, ARRAY[:dim]) AS vector) "
                             "FROM images ORDER BY id LIMIT 2"), {"m": model_id, "dim": dim})
        conn.execute(sa.text("INSERT INTO eval_runs (model_id, method, split, version) "
                             "VALUES (:m, 'model', 'val', 'v1')"), {"m": model_id})


@pytest.fixture
def val_only(db_url, shared_data, tmp_path) -> Path:
    """A database with two validation locations' images and no training images."""
    root = tmp_path / "images"
    copy_locations(shared_data / "images" / VAL_FOLDER, root, 2)
    ingest_locations([shared_data / "buffers" / "new_order_buffer_35.csv"])
    assert ingest_images(root).imported > 10
    return root


# ---------------------------------------------------------------- names are registry keys, not paths

@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs", ".hidden", "-flag", "a/b", "a b", "x" * 65, "",
                                  "tab\there", "new\nline"])
def test_bad_model_names_are_refused_before_anything_is_written(name, data_dir, cli, engine):
    res = cli("train", "--name", name, "--epochs", 1)
    assert res.exit_code == 1
    assert res.stderr == f"Error: invalid model name {name!r}: {NAME_ERROR}\n"
    with pytest.raises(InputError) as err:
        save_untrained(name, dim=8, input_size=32)
    assert str(err.value) == f"invalid model name {name!r}: {NAME_ERROR}"
    assert _count(engine, "SELECT count(*) FROM models") == 0
    assert _files(data_dir.parent) == []  # nothing inside or outside the data dir


@pytest.mark.parametrize("name", ["a", "mnv3s-160", "A.b_c-1", "9lives", "x" * 64])
def test_good_model_names_pass(name):
    assert models.check_name(name) == name


def test_a_name_never_becomes_a_path_and_models_never_share_a_folder(data_dir, tmp_path):
    # old behaviour: <data dir>/models/NAME, so '../../escape' wrote tmp_path/escape
    with pytest.raises(InputError):
        save_untrained("../../escape", dim=8, input_size=32)
    assert not (tmp_path / "escape").exists()
    shared = tmp_path / "same-out"  # two models given the same folder each get their own subfolder
    a = save_untrained("a", dim=8, input_size=32, seed=1, out=shared)
    b = save_untrained("b", dim=8, input_size=32, seed=2, out=shared)
    assert Path(a.weights_path) == shared / str(a.id) / "best.weights.h5"
    assert Path(b.weights_path) == shared / str(b.id) / "best.weights.h5"
    assert file_sha256(Path(a.weights_path)) == a.weights_sha256 != b.weights_sha256
    load_embedder(None, "a")
    default = save_untrained("c", dim=8, input_size=32)
    assert Path(default.weights_path) == data_dir / "models" / str(default.id) / "best.weights.h5"


def test_a_new_model_never_reuses_an_existing_folder(data_dir, engine):
    (data_dir / "models" / "1").mkdir(parents=True)  # e.g. left by another database sharing the data dir
    (data_dir / "models" / "1" / "best.weights.h5").write_bytes(b"someone else's weights")
    with pytest.raises(InputError) as err:
        save_untrained("u", dim=8, input_size=32)
    assert str(err.value) == f"{data_dir / 'models' / '1'}: folder for new model 'u' (id 1) already exists"
    assert err.value.hint == "another database shares this data dir: give each its own GEOLOC_DATA_DIR"
    assert (data_dir / "models" / "1" / "best.weights.h5").read_bytes() == b"someone else's weights"
    assert _count(engine, "SELECT count(*) FROM models") == 0
    assert save_untrained("u", dim=8, input_size=32).id == 2  # the next id gets its own folder


def test_train_has_no_out_option(data_dir, cli):
    res = cli("train", "--name", "m", "--out", "/tmp/elsewhere")
    assert res.exit_code == 2 and "Error: No such option '--out'" in res.stderr


# ---------------------------------------------------------------- weights are checked when loaded

def test_weights_changed_after_training_are_refused(data_dir, engine):
    u = save_untrained("u", dim=8, input_size=32, seed=1)
    v = save_untrained("v", dim=8, input_size=32, seed=2)
    shutil.copyfile(v.weights_path, u.weights_path)  # same shapes: keras would load it without a word
    with pytest.raises(InputError) as err:
        load_embedder(None, "u")
    assert str(err.value) == (f"{u.weights_path}: weights of model 'u' do not match their registered sha256 "
                              "(the file changed after training)")
    with begin() as conn:  # a ready row without a sha (written before shas were checked, or by hand)
        models.register_model(conn, "nosha", "mobilenetv3small", 8, 32, {}, v.weights_path, status="ready")
    with pytest.raises(InputError) as err:
        load_embedder(None, "nosha")
    assert str(err.value) == (f"{v.weights_path}: weights of model 'nosha' have no registered sha256 "
                              "(they cannot be checked)")
    model, row = load_embedder(None, "v")  # an intact one still loads
    assert row.id == v.id and model.output_shape[-1] == 8


# ---------------------------------------------------------------- a ready model is frozen

def _ready_row(name: str = "u"):
    """A ready registry row (no weights file needed: these tests never load it)."""
    with begin() as conn:
        return models.register_model(conn, name, "mobilenetv3small", 8, 32, {**TINY, "run_dir": "/nowhere"},
                                     "/nowhere/best.weights.h5", weights_sha256="a" * 64, status="ready")


def test_resume_of_a_ready_model_is_refused_and_changes_nothing(data_dir, cli, engine):
    u = _ready_row()
    res = cli("train", "--name", "u", "--resume", "--epochs", 30)
    assert res.exit_code == 1
    assert res.stderr == ("Error: model 'u' is ready: a finished model is never trained again (its embeddings "
                          "were made with these weights); train a new model under another name\n")
    assert models.get_model(None, "u") == u
    assert _files(data_dir) == []


CHANGES = [("weights_path", "'/tmp/other.weights.h5'"), ("weights_sha256", "repeat('0', 64)"),
           ("backbone", "'resnet50'"), ("dim", "dim + 1"), ("input_size", "input_size * 2"),
           ("hyperparams", "hyperparams || '{\"lr\": 1}'"), ("status", "'training'"), ("status", "'failed'")]


def test_the_database_refuses_changes_to_a_ready_model_but_allows_rename_and_delete(db_url, engine):
    u = _ready_row()
    for column, value in CHANGES:
        with pytest.raises(sa.exc.DBAPIError) as err, engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE models SET {column} = {value} WHERE name = 'u'"))
        assert f"model u is ready: its {column} cannot change" in str(err.value)
    assert models.get_model(None, "u") == u
    with pytest.raises(InputError) as err, begin() as conn:  # the library says it in one line
        models.update_model(conn, "u", status="failed")
    assert str(err.value) == "model u is ready: its status cannot change (train a new model under another name)"
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE models SET name = 'u2', metrics = '{\"note\": 1}' WHERE id = :id"), {"id": u.id})
        conn.execute(sa.text("UPDATE models SET status = 'ready', dim = dim WHERE id = :id"), {"id": u.id})
    assert models.get_model(None, "u2").metrics == {"note": 1}
    with begin() as conn:  # an unfinished model is not frozen
        models.register_model(conn, "t", "mobilenetv3small", 8, 32, {}, None)
        conn.execute(sa.text("UPDATE models SET dim = 16, status = 'failed' WHERE name = 't'"))
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM models WHERE id = :id"), {"id": u.id})
    assert _count(engine, "SELECT count(*) FROM models") == 1


# ---------------------------------------------------------------- one process trains a model

def test_resume_while_another_session_holds_the_model_is_refused(data_dir, cli, engine):
    with begin() as conn:
        row = models.register_model(conn, "busy", "mobilenetv3small", 32, 64,
                                    {**TrainConfig(**TINY).__dict__, "run_dir": str(data_dir / "x")}, None)
    with engine.connect() as other:  # stands for a running `geoloc train --name busy`
        assert models.try_lock_training(other, row.id)
        other.commit()
        res = cli("train", "--name", "busy", "--resume")
        assert res.exit_code == 1
        assert res.stderr == ("Error: model 'busy' is being trained by another process\n"
                              "Hint: wait for it to finish; 'geoloc models list' shows its status\n")
        models.unlock_training(other, row.id)
        other.commit()
    assert models.get_model(None, "busy").updated_at == row.updated_at
    assert _files(data_dir) == []


def _geoloc(db_url: str, data: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "GEOLOC_DATABASE_URL": db_url, "GEOLOC_DATA_DIR": str(data),
           "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "geoloc", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_trainings_of_one_name_at_once_make_exactly_one_model(imported, db_url, engine, tmp_path):
    data = tmp_path / "data"
    args = ["train", "--name", "race", *TINY_ARGS, "--epochs", "1", "--steps-per-epoch", "1"]
    procs = [_geoloc(db_url, data, *args) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], outs
    loser_err = outs[codes.index(1)][1]
    assert "Traceback" not in outs[0][1] + outs[1][1]
    errors = [line for line in loser_err.splitlines() if line.startswith("Error:")]
    assert errors in (["Error: model 'race' already exists"],
                      ["Error: model 'race' is being trained by another process"]), loser_err
    row = models.get_model(None, "race")
    assert row.status == "ready" and row.metrics["steps"] == 1
    assert _count(engine, "SELECT count(*) FROM models") == 1
    assert [p.name for p in (data / "models").iterdir()] == [str(row.id)]
    assert file_sha256(Path(row.weights_path)) == row.weights_sha256


@pytest.mark.slow
def test_training_killed_with_sigkill_resumes_to_a_ready_model(imported, db_url, engine, tmp_path, cli):
    data = tmp_path / "data"  # the data dir `imported` set for this process too
    proc = _geoloc(db_url, data, "train", "--name", "drill", *TINY_ARGS, "--epochs", "2", "--steps-per-epoch", "3")
    try:
        deadline = time.monotonic() + 240
        checkpoints: list[Path] = []
        while not checkpoints and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            checkpoints = list(data.glob("models/*/checkpoint/state.json"))
        assert checkpoints, proc.communicate()[1] if proc.poll() is not None else "no checkpoint written"
        # while it runs, the model is locked: a second run of the same name is turned away
        res = cli("train", "--name", "drill", "--resume")
        assert res.exit_code == 1 and res.stderr.startswith(
            "Error: model 'drill' is being trained by another process"), res.stderr
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    row = models.get_model(None, "drill")
    assert row.status == "training" and row.weights_sha256 is None
    # the killed session's lock goes with its connection; wait until the server has noticed
    with engine.connect() as conn:
        deadline = time.monotonic() + 30
        while not models.try_lock_training(conn, row.id) and time.monotonic() < deadline:
            conn.rollback()
            time.sleep(0.1)
        models.unlock_training(conn, row.id)
        conn.commit()
    res = cli("train", "--name", "drill", "--resume")
    assert res.exit_code == 0, res.output
    done = models.get_model(None, "drill")
    assert done.id == row.id and done.status == "ready" and done.metrics["steps"] == 6
    assert [h["global_step"] for h in done.history] == [3, 6]
    assert file_sha256(Path(done.weights_path)) == done.weights_sha256
    assert _count(engine, "SELECT count(*) FROM models") == 1
    assert [p.name for p in (data / "models").iterdir()] == [str(row.id)]
    # the whitened network is written beside the raw one only when the final step kept it
    whitened = ["whitened.weights.h5"] if done.hyperparams.get("whiten") else []
    assert sorted(p.name for p in (data / "models" / str(row.id)).iterdir()) == \
        ["best.weights.h5", "checkpoint", "training_curve.png", *whitened]


# ---------------------------------------------------------------- retrain: build new, then swap

def test_replace_model_swaps_in_one_transaction(val_only, data_dir, engine):
    old = save_untrained("m", dim=8, input_size=32, seed=1)
    new = save_untrained("m.next", dim=8, input_size=32, seed=2)
    _add_embeddings_and_evaluation(engine, old.id, 8)
    with begin() as conn:
        unfinished = models.register_model(conn, "half", "mobilenetv3small", 8, 32, {}, None)
    with pytest.raises(InputError) as err, begin() as conn:
        models.replace_model(conn, "m", "half")
    assert str(err.value) == "model 'half' is not ready (status training): it cannot replace 'm'"
    with pytest.raises(NotFound), begin() as conn:
        models.replace_model(conn, "m", "nope")
    with engine.connect() as other:  # a run training the old model's row right now: not swapped under it
        assert models.try_lock_training(other, old.id)
        other.commit()
        with pytest.raises(InputError) as err, begin() as conn:
            models.replace_model(conn, "m", "m.next")
        assert str(err.value) == "model 'm' is being trained by another process"
        models.unlock_training(other, old.id)
        other.commit()
    assert models.get_model(None, "m").id == old.id
    assert _count(engine, "SELECT count(*) FROM embeddings WHERE model_id = :m", m=old.id) == 2

    with begin() as conn:
        swapped = models.replace_model(conn, "m", "m.next")
    assert (swapped.id, swapped.name, swapped.weights_sha256) == (new.id, "m", new.weights_sha256)
    assert models.get_model(None, "m").id == new.id
    with pytest.raises(NotFound):
        models.get_model(None, "m.next")
    assert _count(engine, "SELECT count(*) FROM models WHERE id = :m", m=old.id) == 0
    assert _count(engine, "SELECT count(*) FROM embeddings") == 0  # went with the old model
    assert _count(engine, "SELECT count(*) FROM eval_runs") == 0
    assert models.get_model(None, "half").id == unfinished.id
    model, row = load_embedder(None, "m")  # the renamed model loads: its folder is its id's
    assert row.id == new.id and Path(row.weights_path).parent.name == str(new.id)


def test_failed_retrain_keeps_the_old_model_its_embeddings_and_evaluations(val_only, data_dir, engine):
    old = save_untrained("m", dim=8, input_size=32)
    _add_embeddings_and_evaluation(engine, old.id, 8)
    with pytest.raises(InputError) as err:  # no training images: the new model's training fails
        demo._train("m", 1.0, retrain=True)
    assert str(err.value) == "no images in split 'train'"
    assert models.get_model(None, "m").id == old.id
    assert _count(engine, "SELECT count(*) FROM models") == 1
    assert _count(engine, "SELECT count(*) FROM embeddings WHERE model_id = :m", m=old.id) == 2
    assert _count(engine, "SELECT count(*) FROM eval_runs WHERE model_id = :m", m=old.id) == 1
    load_embedder(None, "m")


@pytest.mark.slow
def test_retrain_swaps_in_the_new_model_only_when_it_is_ready(imported, tmp_path, engine):
    old = save_untrained("m", dim=8, input_size=32)
    _add_embeddings_and_evaluation(engine, old.id, 8)
    line = demo._train("m", 0.0, retrain=True)  # a budget of 0 minutes: one step, then validated and ready
    assert line.startswith("model 'm' trained in ") and " min (1 steps), " in line
    new = models.get_model(None, "m")
    assert new.id != old.id and new.status == "ready" and new.metrics["steps"] == 1
    assert _count(engine, "SELECT count(*) FROM models") == 1
    assert _count(engine, "SELECT count(*) FROM embeddings") == 0
    assert _count(engine, "SELECT count(*) FROM eval_runs") == 0
    assert Path(new.weights_path).parent == tmp_path / "data" / "models" / str(new.id)
    assert demo._train("m", 0.0, retrain=False) == "model 'm' already trained (use --retrain to train again)"
    x = np.zeros((1, new.input_size, new.input_size, 3), np.float32)
    model, _ = load_embedder(None, "m")
    assert model(x, training=False).shape == (1, new.dim)


# ---------------------------------------------------------------- the rows need no TensorFlow

ROWS_WITHOUT_TENSORFLOW = """
import json, sys
sys.modules["tensorflow"] = sys.modules["keras"] = None  # any import of either now raises ImportError
from geoloc.cli import main
from geoloc.db import models
from geoloc.db.engine import begin

with begin() as conn:
    models.register_model(conn, "old", "mobilenetv3small", 8, 32, {}, None)
    models.register_model(conn, "new", "mobilenetv3small", 8, 32, {"lr": 0.5}, "/nowhere/new.weights.h5",
                          weights_sha256="b" * 64, status="ready")
    models.update_model(conn, "old", metrics={"note": 1})
with begin() as conn:
    models.replace_model(conn, "old", "new")
print(json.dumps({"listed": [r.name for r in models.list_models()],
                  "shown": models.show_model(None, "old")["hyperparams"]}))
main(["models", "show", "old"], standalone_mode=False)
"""


def test_the_rows_are_registered_replaced_listed_and_shown_where_tensorflow_cannot_load(db_url, engine):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GEOLOC_DATABASE_URL": db_url}
    res = subprocess.run([sys.executable, "-c", ROWS_WITHOUT_TENSORFLOW], capture_output=True, text=True, env=env,
                         cwd=REPO_ROOT, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    first, shown = res.stdout.split("\n", 1)
    assert first == '{"listed": ["old"], "shown": {"lr": 0.5}}'
    assert '"weights_path": "/nowhere/new.weights.h5"' in shown and '"status": "ready"' in shown
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, metrics FROM models")).all() == [("old", {})]
