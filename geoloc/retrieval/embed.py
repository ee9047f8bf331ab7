"""`geoloc embed`: compute the embeddings of the images a model has not seen yet and store them.

Work goes in chunks of CHUNK consecutive image ids. A run claims a chunk (geoloc.retrieval.claims:
an advisory lock per model and chunk), re-reads which of its images are still missing, embeds them
and stores them in one transaction, and only then releases the claim. Two runs of one model, on any
machines, therefore never embed the same image: a chunk held by the other run is skipped, and waited
for and re-checked at the end. A committed chunk stays: an interrupted run resumes with the images
still missing (LEFT JOIN on embeddings).

Within a chunk the model stays busy: tf.data decodes the next batches on its own threads while the
model runs (prefetch), and a writer thread COPYs finished chunks into PostgreSQL, so neither file
reading nor the database waits on the other.

A file that cannot be embedded (missing, not a regular file, over the size or pixel limits of
geoloc.imagefile, not an image, truncated or corrupt) is skipped with its reason and reported, never
fatal; it is not stored, so the next run tries it again. Image ids travel with their pixels through
the pipeline, so a skipped file can never shift the vectors of the others.

At the end `geoloc.retrieval.index.ensure_index` makes the model's HNSW index current: it is built
when missing or invalid, and rebuilt (beside the old one, then swapped in) when asked to or when many
of the model's rows were deleted; otherwise the index, kept up to date by every insert, stays.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from sqlalchemy.engine import Connection, Engine
from tqdm import tqdm

from .. import config
from ..db import sqlfiles
from ..db.engine import check
from ..db.models import get_model
from ..errors import DimensionMismatch, InputError
from ..imagefile import image_file
from . import index as hnsw
from .baseline import THUMBNAIL_BACKBONE, THUMBNAIL_MODEL, ensure_thumbnail_model, thumbnail_batches
from .claims import CHUNK, ChunkClaims
from .vectors import HALFVEC_MAX, vector_cursor

DEFAULT_BATCH = 64

# batches(keys, paths, batch, skipped) -> (keys, vectors) per batch; unreadable files go to SKIPPED
# as (key, path, reason) and are left out
Batches = Callable[[Sequence[int], Sequence[Path], int, list], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass
class Embedder:
    """A model ready to turn image files into (n, dim) unit vectors, batch by batch."""

    name: str
    model_id: int
    dim: int
    input_size: int
    batches: Batches

    def embed(self, paths: Sequence[Path], batch: int = DEFAULT_BATCH) -> np.ndarray:
        """(len(paths), dim) vectors in the order of PATHS; InputError naming the first unreadable file."""
        paths = [Path(p) for p in paths]
        skipped: list = []
        out = [check_dim(self.name, self.dim, v) for _, v in self.batches(range(len(paths)), paths, batch, skipped)]
        if skipped:
            _, path, reason = min(skipped, key=lambda s: s[0])
            raise InputError(f"{path}: {reason}")
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
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable files: (path, reason)
    by_others: int = 0  # embedded meanwhile by another run of the same model
    index_present: bool = True  # False when there is no index (no embeddings, or the dimension is too large)
    index_spilled: str | None = None  # the build outgrew its memory and was slow (index.IndexOutcome.spilled)

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def check_dim(model: str, dim: int, vectors: np.ndarray) -> np.ndarray:
    """VECTORS as float32 (n, dim); DimensionMismatch (wrong shape) or InputError (a value NaN, inf or
    beyond what halfvec holds) before anything is stored otherwise."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors.reshape(1, -1)
    if vectors.ndim != 2:
        raise DimensionMismatch(f"model '{model}' has dim {dim}, got an array of shape {vectors.shape}")
    if vectors.shape[1] != dim:
        raise DimensionMismatch(f"model '{model}' has dim {dim}, got {vectors.shape[1]}")
    if not np.isfinite(vectors).all():
        raise InputError(f"model '{model}' produced non-finite embeddings (NaN or inf)")
    if (np.abs(vectors) > HALFVEC_MAX).any():
        raise InputError(f"model '{model}' produced embedding values beyond ±{HALFVEC_MAX:g}, "
                         "more than the embeddings column (halfvec) holds")
    return vectors


def keras_batches(model, input_size: int) -> Batches:
    """Batches of embeddings from a Keras embedder: parallel decode + prefetch, compiled inference."""
    import tensorflow as tf

    from ..model.data import iter_keyed_batches

    # one trace for every batch size (the last batch is smaller): a retrace costs seconds
    spec = tf.TensorSpec((None, input_size, input_size, 3), tf.float32)
    infer = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    infer(tf.zeros((1, input_size, input_size, 3)))  # trace now, not inside the timed pipeline

    def batches(keys: Sequence[int], paths: Sequence[Path], batch: int,
                skipped: list) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for out_keys, pixels in iter_keyed_batches(keys, paths, input_size, batch, skipped):
            yield out_keys, infer(pixels).numpy()

    return batches


def load_embedder(conn: Connection | None, name: str) -> Embedder:
    """The registered model NAME (or the thumbnail baseline) as an Embedder."""
    if name == THUMBNAIL_MODEL:
        row = ensure_thumbnail_model(conn)
    else:
        row = get_model(conn, name)
    if row.backbone == THUMBNAIL_BACKBONE:
        return Embedder(row.name, row.id, row.dim, row.input_size,
                        lambda keys, paths, batch, skipped: thumbnail_batches(keys, paths, batch, skipped,
                                                                              row.input_size))
    from ..model.registry import load_embedder as load_keras

    model, row = load_keras(conn, name)
    return Embedder(row.name, row.id, row.dim, row.input_size, keras_batches(model, row.input_size))


def store_embeddings(conn: Connection, model: str, model_id: int, dim: int, image_ids: Sequence[int],
                     vectors: np.ndarray) -> int:
    """Write one chunk in the caller's transaction (binary COPY into staging, then a merge).

    Returns how many rows were new. Every vector is checked against the model's dimension first.
    """
    vectors = check_dim(model, dim, vectors)
    if len(image_ids) != len(vectors):
        raise ValueError(f"{len(image_ids)} image ids for {len(vectors)} vectors")
    conn.execute(sqlfiles.text("search/embed_staging.sql"))
    with vector_cursor(conn) as cur:  # COPY, binary: the vectors go out as pgvector values
        with cur.copy("COPY embedding_staging (image_id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for image_id, v in zip(image_ids, vectors):
                copy.write_row((int(image_id), v))
    added = conn.execute(sqlfiles.text("search/embed_insert.sql"), {"model_id": model_id}).rowcount
    conn.execute(sqlfiles.text("search/embed_drop_staging.sql"))
    return added


class _Writer(threading.Thread):
    """Stores queued chunks, each in its own transaction, while the model computes the next ones; a
    chunk's claim is released once its rows are committed."""

    def __init__(self, emb: Embedder, engine: Engine, claims: ChunkClaims):
        super().__init__(name="embedding-writer", daemon=True)
        self.emb, self.engine, self.claims = emb, engine, claims
        self.jobs: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.stored = 0
        self.seconds = 0.0

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                if self.error is None:  # after an error: drain, the main thread will see it
                    self._store(*job)
            finally:
                self.jobs.task_done()

    def _store(self, chunk_no: int, ids, vectors) -> None:
        started = time.perf_counter()
        try:
            with self.engine.begin() as conn:
                self.stored += store_embeddings(conn, self.emb.name, self.emb.model_id, self.emb.dim, ids, vectors)
            self.claims.release(chunk_no)
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        self.seconds += time.perf_counter() - started

    def put(self, chunk_no: int, ids, vectors) -> None:
        self._raise()
        self.jobs.put((chunk_no, ids, vectors))

    def drain(self) -> None:
        """Wait until every queued chunk is stored (and its claim released)."""
        self.jobs.join()
        self._raise()

    def finish(self) -> None:
        self.jobs.put(None)
        self.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def embed_images(model: str, split: str | None = None, version: str | None = None, batch: int = DEFAULT_BATCH,
                 chunk: int = CHUNK, reindex: bool = False, progress: bool = False) -> EmbedSummary:
    """Embed every image (of SPLIT / VERSION) that MODEL has no embedding for, skipping unreadable
    files, then make its HNSW index current (REINDEX: build a fresh one in any case).

    A run, not a step of the caller's transaction: each chunk is committed on its own (other runs
    see it at once), the claims hold a session of their own and the index is built outside any
    transaction, all on the configured database.
    """
    if batch < 1:
        raise InputError(f"--batch {batch}: must be at least 1")
    if chunk < 1:
        raise InputError(f"--chunk {chunk}: must be at least 1")
    config.index_memory_kb()  # a bad GEOLOC_INDEX_MEMORY is named before anything is embedded
    engine = check()
    with engine.begin() as conn:
        emb = load_embedder(conn, model)
        scope = {"model_id": emb.model_id, "split": split, "version": version}
        before = _counts(conn, scope)
        # rows deleted since the index was built (checked before this run refills any of them)
        lost = hnsw.lost_rows(conn, emb.model_id, before.total)
        todo = conn.execute(sqlfiles.text("search/embed_chunks.sql"), {**scope, "chunk": chunk}).all()

    if before.total == 0 and todo:  # an index of no live rows serves no search, and slows the load: drop it
        hnsw.ensure_index(engine, emb.model_id, emb.dim)
    started = time.perf_counter()
    run = _Run(emb, scope, batch, chunk, progress, engine)
    if todo:
        run.embed_chunks(todo)
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        after = _counts(conn, scope)

    index = hnsw.ensure_index(engine, emb.model_id, emb.dim, rebuild=reindex or lost)
    return EmbedSummary(emb.name, emb.model_id, emb.dim, after.images, before.in_scope, run.embedded, seconds,
                        run.write_seconds, index.name, index.built, index.seconds,
                        skipped=[(path, reason) for _, path, reason in sorted(run.skipped, key=lambda s: s[0])],
                        by_others=max(0, after.in_scope - before.in_scope - run.embedded),
                        index_present=index.present, index_spilled=index.spilled)


def _counts(conn: Connection, scope: dict):
    """The model's embeddings in all (total), those of images in the scope (in_scope) and the images
    in the scope (images)."""
    return conn.execute(sqlfiles.text("search/embed_count.sql"), scope).one()


class _Run:
    """One run's pass over the chunks with missing images: claim, re-check, embed, store, release."""

    def __init__(self, emb: Embedder, scope: dict, batch: int, chunk: int, progress: bool, engine: Engine):
        self.emb, self.scope, self.batch, self.chunk, self.progress = emb, scope, batch, chunk, progress
        self.engine = engine
        self.embedded = 0
        self.skipped: list = []  # (image id, path, reason)
        self.write_seconds = 0.0

    def embed_chunks(self, todo: list) -> None:
        """TODO: rows (chunk_no, missing: images missing). Chunks another run holds are done last, once
        this run's own claims are all stored and released, so two runs never wait for each other in a circle."""
        claims = ChunkClaims(self.engine, self.emb.model_id)
        writer = _Writer(self.emb, self.engine, claims)
        self.bar = tqdm(total=sum(t.missing for t in todo), desc=f"embedding ({self.emb.name})", unit="img",
                        file=sys.stderr, disable=not self.progress)
        writer.start()
        try:
            held_elsewhere = []
            for t in todo:
                if claims.try_claim(t.chunk_no):
                    self._chunk(t.chunk_no, t.missing, claims, writer)
                else:
                    held_elsewhere.append(t)
            writer.drain()
            for t in held_elsewhere:
                claims.claim(t.chunk_no)  # waits for the other run to store it (or to die)
                self._chunk(t.chunk_no, t.missing, claims, writer)
        finally:
            self.bar.close()
            try:
                writer.finish()
            finally:
                claims.close()
                self.write_seconds = writer.seconds

    def _chunk(self, chunk_no: int, missing: int, claims: ChunkClaims, writer: _Writer) -> None:
        """Embed what the claimed chunk still misses and queue it; the writer releases the claim."""
        with self.engine.begin() as conn:
            rows = conn.execute(sqlfiles.text("search/embed_missing.sql"),
                                {**self.scope, "lo": chunk_no * self.chunk, "hi": (chunk_no + 1) * self.chunk}).all()
        ids = [r.id for r in rows]
        paths = [image_file(r) for r in rows]
        out_ids: list[np.ndarray] = []
        vectors: list[np.ndarray] = []
        seen = len(self.skipped)
        for keys, v in self.emb.batches(ids, paths, self.batch, self.skipped):
            out_ids.append(np.asarray(keys, np.int64))
            vectors.append(check_dim(self.emb.name, self.emb.dim, v))
            self.bar.update(len(keys) + len(self.skipped) - seen)  # embedded + skipped
            seen = len(self.skipped)
        self.bar.update(len(self.skipped) - seen + max(0, missing - len(ids)))  # + what another run did
        if vectors:
            ids_out = np.concatenate(out_ids)
            writer.put(chunk_no, ids_out.tolist(), np.concatenate(vectors))
            self.embedded += len(ids_out)
        else:
            claims.release(chunk_no)
