"""`geoloc embed` under faults: unreadable files, concurrent runs, SIGKILL, index builds beside live searches.

Everything is real: image files copied from the shared data, PostgreSQL, `python -m geoloc embed`
subprocesses. Where a run has to be caught mid-way, the test holds a real lock that the run must wait
for (an uncommitted embedding row, an open writing transaction) and waits until PostgreSQL shows it
waiting: no sleeps, no timing assertions.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from geoloc.config import REPO_ROOT
from geoloc.db.engine import begin
from geoloc.retrieval import index as hnsw
from geoloc.retrieval import search as S
from geoloc.retrieval.baseline import THUMBNAIL_DIM, THUMBNAIL_MODEL, ensure_thumbnail_model, thumbnail_vector
from retrieval_data import TEST_FOLDER, TINY_MODEL, first_test_locations, load_subset, make_tiny_model

WAIT_S = 120  # upper bound for a condition the test waits for; reached only when something is broken


# ------------------------------------------------------------------------------------------ helpers

def _wait(what: str, condition, *processes: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        for proc in processes:
            if proc.poll() is not None:
                pytest.fail(f"while waiting for {what}: the run ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def _waiting_backend(engine, statement: str) -> bool:
    """Is a backend running a statement that contains STATEMENT waiting on a lock?"""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :q"),
            {"q": f"%{statement}%"}).scalar() > 0


def _running(engine, statement: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE :q "
                                    "AND state = 'active' AND pid <> pg_backend_pid()"),
                            {"q": f"%{statement}%"}).scalar() > 0


def _only_claimed_chunks_missing(engine, model_id: int, chunk: int) -> bool:
    """Is every image still without an embedding in a chunk some run holds a claim on?"""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM images i "
            "WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = :m AND e.image_id = i.id) "
            "  AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
            "                  AND l.objsubid = 2 AND l.classid::bigint = :m AND l.objid::bigint = i.id / :c)"),
            {"m": model_id, "c": chunk}).scalar() == 0


def _count(engine, model_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM embeddings WHERE model_id = :m"), {"m": model_id}).scalar()


def _indexes(engine, model_id: int) -> dict[str, bool]:
    """{index name: indisvalid} of the model's HNSW index and any build leftovers."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "WHERE c.relname LIKE :p"), {"p": f"embeddings\\_hnsw\\_{model_id}%"}).all()
    return {r.relname: r.indisvalid for r in rows}


def _index_oid(engine, model_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT to_regclass(:n)::oid"), {"n": hnsw.index_name(model_id)}).scalar()


def _embed_process(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-m", "geoloc", "embed", *args], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    return out


def _embedded_now(stdout: str) -> int:
    return int(re.search(r": (\d+) embedded now, ", stdout.splitlines()[0]).group(1))


def _hold_row(engine, model_id: int, image_id: int, dim: int):
    """An open transaction with an uncommitted embedding of IMAGE_ID: a run storing that image waits for it."""
    conn = engine.connect()
    conn.execute(sa.text("INSERT INTO embeddings (model_id, image_id, embedding) VALUES (:m, :i, CAST(:v AS vector))"),
                 {"m": model_id, "i": image_id, "v": "[" + ",".join(["0.5"] * dim) + "]"})
    return conn


def _image_ids(engine) -> list[int]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM images ORDER BY id")).scalars().all()


def _stored_vectors(engine, model_id: int):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT i.root || '/' || i.path AS file, e.embedding::real[] AS embedding "
            "FROM embeddings e JOIN images i ON i.id = e.image_id WHERE e.model_id = :m ORDER BY i.id"),
            {"m": model_id}).all()


def _thumbnail_id() -> int:
    with begin() as conn:
        return ensure_thumbnail_model(conn).id


@pytest.fixture
def three(db_url, shared_data, tmp_path):
    """Three real Test v1 locations (~75 images) imported into a fresh database."""
    return load_subset(shared_data, tmp_path, 3)


@pytest.fixture
def twelve(db_url, shared_data, tmp_path):
    """Twelve real Test v1 locations (~300 images) imported into a fresh database."""
    return load_subset(shared_data, tmp_path, 12)


# ------------------------------------------------------------------------------ unreadable files

@pytest.fixture
def damaged(db_url, shared_data, tmp_path):
    """Three imported locations, then seven of their files damaged on disk in seven different ways."""
    root, _, images = load_subset(shared_data, tmp_path, 3)
    files = sorted(root.rglob("*.jpg"))
    victims = files[3:66:9]  # spread over several batches and chunks
    text, truncated, bomb, missing, fifo, link, folder = victims
    text.write_text("not a picture")
    truncated.write_bytes(truncated.read_bytes()[:1500])  # a valid header, the pixels cut off
    from test_search import bomb_png
    bomb.write_bytes(bomb_png(10000, 10000))
    missing.unlink()
    fifo.unlink()
    os.mkfifo(fifo)
    link.unlink()
    link.symlink_to(files[0])
    folder.unlink()
    folder.mkdir()
    reasons = {
        text: "not an image (unrecognised file format)",
        truncated: "not a readable image (",
        bomb: "image is 10000 x 10000 pixels, more than the limit of 40,000,000 (a decompression bomb or a huge image)",
        missing: "file not found",
        fifo: "is a FIFO, not an image file",
        link: "is a symbolic link, not an image file",
        folder: "is a folder, not an image file",
    }
    return images, reasons


def truncated_file(reasons: dict) -> Path:
    return next(p for p, r in reasons.items() if r == "not a readable image (")


@pytest.mark.parametrize("model", [TINY_MODEL, THUMBNAIL_MODEL])
def test_unreadable_files_are_skipped_and_listed_and_the_good_ones_stored_with_their_own_vectors(
        cli, engine, damaged, tmp_path, model):
    images, reasons = damaged
    if model == TINY_MODEL:
        make_tiny_model(tmp_path)
    res = cli("embed", "--model", model, "--batch", "4", "--chunk", "16")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    good = images - len(reasons)
    assert lines[0].endswith(f": {good} embedded now, 0 already stored, {images} in all")
    assert lines[1] == f"  {len(reasons)} skipped (not stored; fix or remove them and run again):"
    listed = dict(line.strip().split(": ", 1) for line in lines[2:2 + len(reasons)])
    assert set(listed) == {str(p) for p in reasons}
    # TensorFlow's decoder (Keras models) or Pillow's (thumbnails) found the cut-off pixels
    reasons[truncated_file(reasons)] += ("jpeg::Uncompress failed. Invalid JPEG data or crop window.)"
                                         if model == TINY_MODEL else "image file is truncated (")
    for path, expected in reasons.items():
        reason = listed[str(path)]
        assert reason.startswith(expected) if expected.endswith("(") else reason == expected, (path, reason)
    assert len(lines) > 2 + len(reasons)
    assert lines[-1].startswith("  HNSW index embeddings_hnsw_") and " built in " in lines[-1]

    with engine.connect() as conn:
        model_id = conn.execute(sa.text("SELECT id FROM models WHERE name = :n"), {"n": model}).scalar()
    rows = _stored_vectors(engine, model_id)
    assert len(rows) == good and not {Path(r.file) for r in rows} & set(reasons)
    # every stored vector is the one of its own file: nothing shifted around the skipped files
    got = np.array([r.embedding for r in rows])
    if model == TINY_MODEL:
        from model_images import load_images
        from geoloc.model.registry import load_embedder

        keras_model, _ = load_embedder(None, TINY_MODEL)
        expected = keras_model.predict(load_images([Path(r.file) for r in rows], 64), verbose=0)
        # stored as 16-bit floats: rounded by at most 2^-11 of each value
        np.testing.assert_allclose(got, expected, rtol=2.0 ** -11, atol=1e-4)
    else:  # the same float32 thumbnail, rounded to 16-bit floats as the column stores it
        np.testing.assert_allclose(got, np.array([thumbnail_vector(Path(r.file)) for r in rows], np.float16),
                                   atol=1e-6)
    assert _indexes(engine, model_id) == {hnsw.index_name(model_id): True}

    # skipped files are tried again: once repaired, the next run stores them
    text = next(p for p, r in reasons.items() if r.startswith("not an image"))
    shutil.copy2(sorted(p for p in text.parent.glob("*.jpg") if p not in reasons)[0], text)
    res = cli("embed", "--model", model)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].endswith(f": 1 embedded now, {good} already stored, {images} in all")
    assert res.stdout.splitlines()[1] == f"  {len(reasons) - 1} skipped (not stored; fix or remove them and run again):"


def test_the_cli_lists_ten_skipped_files_and_counts_the_rest(cli, engine, db_url, shared_data, tmp_path):
    root, _, images = load_subset(shared_data, tmp_path, 1)
    files = sorted(root.rglob("*.jpg"))[:13]
    for f in files:
        f.write_text("no image")
    res = cli("embed", "--model", THUMBNAIL_MODEL)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[1] == "  13 skipped (not stored; fix or remove them and run again):"
    assert lines[2:12] == [f"    {f}: not an image (unrecognised file format)" for f in files[:10]]
    assert lines[12] == "    ... and 3 more"


# ----------------------------------------------------------------------- index builds and searches

def test_searches_and_writes_of_other_models_go_on_while_an_index_is_built(engine, three, tmp_path):
    """CREATE INDEX CONCURRENTLY: a build waiting for a writer blocks no search or write, and the old
    index serves the model until the new one is swapped in."""
    from geoloc.retrieval.embed import embed_images, store_embeddings

    make_tiny_model(tmp_path)
    embed_images(TINY_MODEL)
    embed_images(THUMBNAIL_MODEL)
    with engine.connect() as conn:
        tiny = conn.execute(sa.text("SELECT id FROM models WHERE name = :n"), {"n": TINY_MODEL}).scalar()
        thumb = conn.execute(sa.text("SELECT id FROM models WHERE name = :n"), {"n": THUMBNAIL_MODEL}).scalar()
        image_id = conn.execute(sa.text("SELECT min(image_id) FROM embeddings WHERE model_id = :m"),
                                {"m": thumb}).scalar()
    old_oid = _index_oid(engine, tiny)
    query = np.asarray(thumbnail_vector(Path(_stored_vectors(engine, thumb)[0].file)), np.float32)

    writer = engine.connect()  # an embedding writer that has not committed yet: the build must wait for it
    writer.execute(sa.text("LOCK TABLE embeddings IN ROW EXCLUSIVE MODE"))
    errors: list[BaseException] = []

    def build():
        try:
            hnsw.build_index(engine, tiny, 32)
        except BaseException as exc:
            errors.append(exc)

    def searches_and_writes_go_on() -> None:
        with begin() as conn:  # a search of another model, and one of the model being rebuilt
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            conn.execute(sa.text("SET LOCAL statement_timeout = '10s'"))
            S.set_search_options(conn)
            found = S.knn(conn, thumb, THUMBNAIL_DIM, query, k=3)
            assert found[0].distance == pytest.approx(0.0, abs=1e-5)
            assert len(S.knn(conn, tiny, 32, np.ones(32, np.float32) / np.sqrt(32), k=3)) == 3
        with begin() as conn:  # an embedding write of another model
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            conn.execute(sa.text("DELETE FROM embeddings WHERE model_id = :m AND image_id = :i"),
                         {"m": thumb, "i": image_id})
            assert store_embeddings(conn, THUMBNAIL_MODEL, thumb, THUMBNAIL_DIM, [image_id],
                                    query.reshape(1, -1)) == 1

    builder = threading.Thread(target=build)
    builder.start()
    try:
        _wait("the index build to wait for the open writer", lambda: _waiting_backend(engine, "CREATE INDEX"))
        assert _indexes(engine, tiny) == {hnsw.index_name(tiny): True, hnsw.index_name(tiny, "_next"): False}
        searches_and_writes_go_on()
        assert builder.is_alive()  # still waiting: all of the above ran during the build
    finally:
        writer.rollback()
        writer.close()
        builder.join(WAIT_S)
    assert not errors and not builder.is_alive()
    assert _indexes(engine, tiny) == {hnsw.index_name(tiny): True}
    assert _index_oid(engine, tiny) != old_oid  # a new graph, under the old name


def test_a_model_that_lost_many_rows_gets_a_fresh_index_and_a_deleted_models_index_goes(cli, engine, twelve):
    _, _, images = twelve
    assert cli("embed", "--model", THUMBNAIL_MODEL).exit_code == 0
    thumb = _thumbnail_id()
    first = _index_oid(engine, thumb)
    with begin() as conn:  # images deleted: their embeddings go with them (ON DELETE CASCADE)
        conn.execute(sa.text("DELETE FROM images WHERE id IN (SELECT id FROM images ORDER BY id DESC LIMIT :n)"),
                     {"n": images // 3})
    res = cli("embed", "--model", THUMBNAIL_MODEL)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1].startswith(f"  HNSW index embeddings_hnsw_{thumb} built in ")
    assert _index_oid(engine, thumb) != first and _indexes(engine, thumb) == {hnsw.index_name(thumb): True}
    # a few deletes keep the graph (pgvector marks them deleted); the next run says it is up to date
    with begin() as conn:
        conn.execute(sa.text("DELETE FROM images WHERE id IN (SELECT id FROM images ORDER BY id DESC LIMIT 2)"))
    second = _index_oid(engine, thumb)
    res = cli("embed", "--model", THUMBNAIL_MODEL)
    assert res.stdout.splitlines()[-1] == f"  HNSW index embeddings_hnsw_{thumb} up to date"
    assert _index_oid(engine, thumb) == second

    with begin() as conn:  # another model, then deleted: its partial index must not stay behind
        conn.execute(sa.text("INSERT INTO models (name, backbone, dim, input_size, status) "
                             "VALUES ('gone', 'thumbnail', 768, 16, 'ready')"))
        gone = conn.execute(sa.text("SELECT id FROM models WHERE name = 'gone'")).scalar()
        conn.execute(sa.text("INSERT INTO embeddings SELECT :g, image_id, embedding FROM embeddings "
                             "WHERE model_id = :m"), {"g": gone, "m": thumb})
    assert cli("embed", "--model", "gone").exit_code == 0
    assert _indexes(engine, gone) == {hnsw.index_name(gone): True}
    with begin() as conn:
        conn.execute(sa.text("DELETE FROM models WHERE id = :g"), {"g": gone})
    assert cli("embed", "--model", THUMBNAIL_MODEL).exit_code == 0
    assert _indexes(engine, gone) == {}


# ------------------------------------------------------------------------- concurrent runs, kill -9

def test_two_runs_of_one_model_share_the_work_and_embed_each_image_once(engine, twelve):
    _, _, images = twelve
    thumb = _thumbnail_id()
    ids = _image_ids(engine)
    chunk = 16
    third = sorted({i // chunk for i in ids})[2]
    # run A stalls on the third chunk: an uncommitted row of one of its images holds A's writer
    holder = _hold_row(engine, thumb, next(i for i in ids if i // chunk == third), THUMBNAIL_DIM)
    a = b = None
    try:
        a = _embed_process("--model", THUMBNAIL_MODEL, "--chunk", str(chunk))
        _wait("run A to stall on the held row", lambda: _waiting_backend(engine, "INSERT INTO embeddings"), a)
        stored_by_a = _count(engine, thumb)
        assert 0 < stored_by_a < images
        b = _embed_process("--model", THUMBNAIL_MODEL, "--chunk", str(chunk))
        # B embeds every chunk A does not hold, then waits for A's chunks
        _wait("run B to store what A does not hold",
              lambda: _count(engine, thumb) > stored_by_a and _only_claimed_chunks_missing(engine, thumb, chunk), b)
    finally:
        holder.rollback()
        holder.close()
    out_a, out_b = _finish(a), _finish(b)
    assert _embedded_now(out_a) > 0 and _embedded_now(out_b) > 0
    assert _embedded_now(out_a) + _embedded_now(out_b) == images  # no image was embedded twice
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT image_id) FROM embeddings WHERE model_id = :m"),
                            {"m": thumb}).one() == (images, images)
    assert _indexes(engine, thumb) == {hnsw.index_name(thumb): True}
    rows = _stored_vectors(engine, thumb)
    np.testing.assert_allclose(np.array([r.embedding for r in rows[::7]]),
                               np.array([thumbnail_vector(Path(r.file)) for r in rows[::7]], np.float16), atol=1e-6)


@pytest.mark.slow
def test_kill_9_mid_run_and_mid_index_build_loses_and_duplicates_nothing(cli, engine, db_url, shared_data, tmp_path):
    root, _, first = load_subset(shared_data, tmp_path, 3)
    assert cli("embed", "--model", THUMBNAIL_MODEL).exit_code == 0  # indexed
    thumb = _thumbnail_id()
    target = root / "000"
    for paths in list(first_test_locations(shared_data, 12).values())[3:]:  # more images arrive
        for p in paths:
            shutil.copy2(p, target / p.name)
    from geoloc.imagery.importer import ingest_images

    images = first + ingest_images(root).imported
    assert (root.name, images > first) == (TEST_FOLDER, True)
    ids = _image_ids(engine)
    new = ids[first:]

    # 1. SIGKILL while the run is storing: some chunks committed, others claimed and in flight
    holder = _hold_row(engine, thumb, new[len(new) // 2], THUMBNAIL_DIM)
    try:
        run = _embed_process("--model", THUMBNAIL_MODEL, "--chunk", "16")
        _wait("the run to stall on the held row", lambda: _waiting_backend(engine, "INSERT INTO embeddings"), run)
        run.send_signal(signal.SIGKILL)
        run.wait(WAIT_S)
        assert _indexes(engine, thumb) == {hnsw.index_name(thumb): True}  # the old index still serves searches
    finally:
        holder.rollback()
        holder.close()
    assert first < _count(engine, thumb) < images

    before = _count(engine, thumb)
    res = cli("embed", "--model", THUMBNAIL_MODEL)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].endswith(
        f": {images - before} embedded now, {before} already stored, {images} in all")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT image_id) FROM embeddings WHERE model_id = :m"),
                            {"m": thumb}).one() == (images, images)
    rows = _stored_vectors(engine, thumb)
    np.testing.assert_allclose(np.array([r.embedding for r in rows]),
                               np.array([thumbnail_vector(Path(r.file)) for r in rows], np.float16), atol=1e-6)
    assert _indexes(engine, thumb) == {hnsw.index_name(thumb): True}

    # 2. SIGKILL while a fresh index is being built: the old one stays, the leftover goes next time
    old_oid = _index_oid(engine, thumb)
    writer = engine.connect()
    writer.execute(sa.text("LOCK TABLE embeddings IN ROW EXCLUSIVE MODE"))
    try:
        run = _embed_process("--model", THUMBNAIL_MODEL, "--reindex")
        _wait("the index build to wait for the open writer", lambda: _waiting_backend(engine, "CREATE INDEX"), run)
        run.send_signal(signal.SIGKILL)
        run.wait(WAIT_S)
        # the server notices the dead client and cancels its build (client_connection_check_interval)
        _wait("the orphaned build to be cancelled", lambda: not _running(engine, "CREATE INDEX"))
        assert _indexes(engine, thumb) == {hnsw.index_name(thumb): True, hnsw.index_name(thumb, "_next"): False}
        assert _index_oid(engine, thumb) == old_oid
    finally:
        writer.rollback()
        writer.close()
    res = cli("embed", "--model", THUMBNAIL_MODEL)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == f"  HNSW index embeddings_hnsw_{thumb} up to date"
    assert _indexes(engine, thumb) == {hnsw.index_name(thumb): True}
    assert _count(engine, thumb) == images
