"""`geoloc embed`: compute the embeddings of the images a model has not seen yet and store them.

The pipeline keeps the model busy: tf.data decodes and resizes the next batches on its own threads
while the model runs (prefetch), and a writer thread COPYs finished chunks into PostgreSQL, each in
its own transaction, so neither file reading nor the database waits on the other. A chunk that is
committed stays: an interrupted run resumes with the images still missing (LEFT JOIN on embeddings).
After loading, the model's partial HNSW index is built from scratch (see geoloc.retrieval.index).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ..db import sqlfiles
from ..db.engine import begin, check, psycopg_connection
from ..errors import DimensionMismatch, InputError
from . import index as hnsw
from .baseline import THUMBNAIL_BACKBONE, THUMBNAIL_MODEL, ensure_thumbnail_model, thumbnail_batches
from .vectors import vector_cursor

DEFAULT_BATCH = 64
CHUNK = 2048  # rows per COPY + commit: small enough to lose little on interruption
REBUILD_FRACTION = 0.1  # more new rows than this share of the existing ones: drop the index, rebuild after


@dataclass
class Embedder:
    """A model ready to turn image files into (n, dim) unit vectors, batch by batch."""

    name: str
    model_id: int
    dim: int
    input_size: int
    batches: Callable[[Sequence[Path], int], Iterator[np.ndarray]]

    def embed(self, paths: Sequence[Path], batch: int = DEFAULT_BATCH) -> np.ndarray:
        out = [check_dim(self.name, self.dim, b) for b in self.batches(list(paths), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


@dataclass
class EmbedSummary:
    model: str
    model_id: int
    dim: int
    in_scope: int  # images of the split/version (or all)
    already: int  # of those, embedded before this run
    embedded: int  # embedded by this run
    seconds: float  # embedding + writing (not the index build)
    write_seconds: float  # of which the writer thread spent storing (overlapped with inference)
    index: str | None  # the HNSW index name, None when the dimension is too large for one
    index_built: bool
    index_seconds: float

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def check_dim(model: str, dim: int, vectors: np.ndarray) -> np.ndarray:
    """VECTORS as float32 (n, dim); DimensionMismatch before anything is stored otherwise."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors.reshape(1, -1)
    if vectors.ndim != 2:
        raise DimensionMismatch(f"model '{model}' has dim {dim}, got an array of shape {vectors.shape}")
    if vectors.shape[1] != dim:
        raise DimensionMismatch(f"model '{model}' has dim {dim}, got {vectors.shape[1]}")
    if not np.isfinite(vectors).all():
        raise InputError(f"model '{model}' produced non-finite embeddings (NaN or inf)")
    return vectors


def keras_batches(model, input_size: int) -> Callable[[Sequence[Path], int], Iterator[np.ndarray]]:
    """Batches of embeddings from a Keras embedder: parallel decode + prefetch, compiled inference."""
    import tensorflow as tf

    from ..model.data import iter_image_batches

    # one trace for every batch size (the last batch is smaller): a retrace costs seconds
    spec = tf.TensorSpec((None, input_size, input_size, 3), tf.float32)
    infer = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    infer(tf.zeros((1, input_size, input_size, 3)))  # trace now, not inside the timed pipeline

    def batches(paths: Sequence[Path], batch: int) -> Iterator[np.ndarray]:
        for pixels in iter_image_batches(paths, input_size, batch):
            yield infer(tf.constant(pixels)).numpy()

    return batches


def load_embedder(conn, name: str) -> Embedder:
    """The registered model NAME (or the thumbnail baseline) as an Embedder."""
    from ..model.registry import get_model

    if name == THUMBNAIL_MODEL:
        row = ensure_thumbnail_model(conn)
    else:
        row = get_model(conn, name)
    if row.backbone == THUMBNAIL_BACKBONE:
        return Embedder(row.name, row.id, row.dim, row.input_size,
                        lambda paths, batch: thumbnail_batches(paths, batch, row.input_size))
    from ..model.registry import load_embedder as load_keras

    model, row = load_keras(conn, name)
    return Embedder(row.name, row.id, row.dim, row.input_size, keras_batches(model, row.input_size))


def store_embeddings(conn, model: str, model_id: int, dim: int, image_ids: Sequence[int],
                     vectors: np.ndarray) -> int:
    """Write one chunk in the caller's transaction (binary COPY into staging, then a merge).

    Returns how many rows were new. Every vector is checked against the model's dimension first.
    """
    vectors = check_dim(model, dim, vectors)
    if len(image_ids) != len(vectors):
        raise ValueError(f"{len(image_ids)} image ids for {len(vectors)} vectors")
    with vector_cursor(conn) as cur:
        cur.execute(sqlfiles.read("search/embed_staging.sql"))
        with cur.copy("COPY embedding_staging (image_id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for image_id, v in zip(image_ids, vectors):
                copy.write_row((int(image_id), v))
        cur.execute(sqlfiles.read("search/embed_insert.sql"), {"model_id": model_id})
        added = cur.rowcount
        cur.execute("DROP TABLE embedding_staging")
    return added


class _Writer(threading.Thread):
    """Stores queued chunks, each in its own transaction, while the model computes the next ones."""

    def __init__(self, emb: Embedder, url: str | None):
        super().__init__(name="embedding-writer", daemon=True)
        self.emb, self.url = emb, url
        self.jobs: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.stored = 0
        self.seconds = 0.0

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.error is not None:
                continue  # drain: the main thread will see the error
            started = time.perf_counter()
            try:
                with begin(self.url) as conn:
                    self.stored += store_embeddings(conn, self.emb.name, self.emb.model_id, self.emb.dim, *job)
            except BaseException as exc:  # handed to the main thread
                self.error = exc
            self.seconds += time.perf_counter() - started

    def put(self, ids, vectors) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put((ids, vectors))

    def finish(self) -> None:
        self.jobs.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def embed_images(model: str, split: str | None = None, version: str | None = None, batch: int = DEFAULT_BATCH,
                 chunk: int = CHUNK, progress: bool = False, url: str | None = None) -> EmbedSummary:
    """Embed every image (of SPLIT / VERSION) that MODEL has no embedding for, then (re)build its index."""
    if batch < 1:
        raise InputError(f"--batch {batch}: must be at least 1")
    with begin(url) as conn:
        emb = load_embedder(conn, model)
        params = {"model_id": emb.model_id, "split": split, "version": version}
        with psycopg_connection(conn).cursor() as cur:
            cur.execute(sqlfiles.read("search/embed_missing.sql"), params)
            missing = cur.fetchall()
            cur.execute(sqlfiles.read("search/embed_count.sql"), params)
            total_before, in_scope_before = cur.fetchone()
        had_index = hnsw.index_exists(conn, emb.model_id)
    in_scope = in_scope_before + len(missing)
    rebuild = bool(missing) and (not had_index or len(missing) > REBUILD_FRACTION * total_before)

    started = time.perf_counter()
    write_seconds = 0.0
    if missing:
        if rebuild and had_index:
            with begin(url) as conn:  # a bulk load into a live graph is slower than a fresh build
                hnsw.drop_index(conn, emb.model_id)
        write_seconds = _run_pipeline(emb, missing, batch, chunk, progress, url)
    seconds = time.perf_counter() - started

    index_seconds = 0.0
    built = False
    indexable = hnsw.vector_type(emb.dim).indexable
    if indexable and (rebuild or not had_index):
        t = time.perf_counter()
        with begin(url) as conn:
            with psycopg_connection(conn).cursor() as cur:
                cur.execute(sqlfiles.read("search/has_embeddings.sql"), {"model_id": emb.model_id})
                if cur.fetchone()[0]:
                    built = hnsw.build_index(conn, emb.model_id, emb.dim)
        index_seconds = time.perf_counter() - t
    return EmbedSummary(emb.name, emb.model_id, emb.dim, in_scope, in_scope_before, len(missing), seconds,
                        write_seconds, hnsw.index_name(emb.model_id) if indexable else None, built, index_seconds)


def _run_pipeline(emb: Embedder, missing: list, batch: int, chunk: int, progress: bool, url: str | None) -> float:
    """Embed MISSING (id, root, path) rows and store them; returns the writer thread's busy seconds."""
    from ..imagery.importer import image_file

    check(url)
    ids = [r[0] for r in missing]
    paths = [image_file({"root": r[1], "path": r[2]}) for r in missing]
    writer = _Writer(emb, url)
    writer.start()
    pending_ids: list[int] = []
    pending: list[np.ndarray] = []
    done = 0
    bar = tqdm(total=len(ids), desc=f"embedding ({emb.name})", unit="img", file=sys.stderr, disable=not progress)
    try:
        for vectors in emb.batches(paths, batch):
            vectors = check_dim(emb.name, emb.dim, vectors)
            pending_ids.extend(ids[done:done + len(vectors)])
            pending.append(vectors)
            done += len(vectors)
            bar.update(len(vectors))
            if len(pending_ids) >= chunk:
                writer.put(pending_ids, np.concatenate(pending))
                pending_ids, pending = [], []
        if pending_ids:
            writer.put(pending_ids, np.concatenate(pending))
    finally:
        bar.close()
        writer.finish()
    return writer.seconds
