"""Throughput of `geoloc embed` against the bare model's inference speed, same model, same run.

    .venv/bin/python benchmarks/embed_bench.py                       # MobileNetV3-Small, dim 256, 160 px
    .venv/bin/python benchmarks/embed_bench.py --split test --version v1 --batch 64 --input-size 160

Figures printed side by side:
  model only   the embedder on random pixels already in memory (no I/O, no database): the ceiling
  decode only  the tf.data input pipeline alone (read + decode + resize, parallel), no model
  per chunk    decode + model with a pipeline per chunk of ids, as `geoloc embed` runs them, with
               tf.data's autotuning on and with the product's fixed parallelism (geoloc.model.data),
               and the seconds spent ending those pipelines
  embed        `embed_images` end to end: read, decode, infer, COPY into PostgreSQL (writer thread)
An untrained model with the requested shape is registered under a throwaway name in the configured
database (GEOLOC_DATABASE_URL or the embedded cluster), used, then deleted with its embeddings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import tensorflow as tf  # noqa: E402

from geoloc.db.engine import begin  # noqa: E402
from geoloc.imagefile import image_file  # noqa: E402
from geoloc.model.data import image_dataset, iter_keyed_batches  # noqa: E402
from geoloc.model.registry import load_embedder  # noqa: E402
from geoloc.model.train import save_untrained  # noqa: E402
from geoloc.retrieval.claims import CHUNK  # noqa: E402
from geoloc.retrieval.embed import embed_images  # noqa: E402


def compiled(model, size: int):
    spec = tf.TensorSpec((None, size, size, 3), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def model_only(model, size: int, batch: int, seconds: float) -> float:
    infer = compiled(model, size)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    infer(x).numpy()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        infer(x).numpy()
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def decode_only(paths: list[Path], size: int, batch: int) -> float:
    start, n = time.perf_counter(), 0
    for images in image_dataset(paths, size, batch):
        n += int(images.shape[0])
    return n / (time.perf_counter() - start)


def per_chunk(model, paths: list[Path], size: int, batch: int, autotune: bool) -> tuple[float, float]:
    """Images/s of decode + model over PATHS with a pipeline per CHUNK paths, and the seconds between
    each pipeline's last batch and its end."""
    infer = compiled(model, size)
    infer(tf.zeros((1, size, size, 3)))
    n, ending, start = 0, 0.0, time.perf_counter()
    for lo in range(0, len(paths), CHUNK):
        part = paths[lo:lo + CHUNK]
        last = time.perf_counter()
        for keys, pixels in iter_keyed_batches(range(lo, lo + len(part)), part, size, batch, [], autotune=autotune):
            infer(pixels).numpy()
            n += len(keys)
            last = time.perf_counter()
        ending += time.perf_counter() - last
    return n / (time.perf_counter() - start), ending


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="mobilenetv3small")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--input-size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--split", default="test")
    ap.add_argument("--version", default="v1")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to time the bare model")
    args = ap.parse_args()

    name = f"bench-embed-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="geoloc-embed-bench-"))
    try:
        save_untrained(name, args.backbone, args.dim, args.input_size, seed=0, out=tmp)
        model, row = load_embedder(None, name)
        with begin() as conn:
            rows = conn.execute(sa.text("SELECT root, path FROM images WHERE split = :s AND version = :v ORDER BY id"),
                                {"s": args.split, "v": args.version}).all()
        paths = [image_file(r) for r in rows]
        if not paths:
            raise SystemExit(f"no images in split {args.split} {args.version}: import them first")

        bare = model_only(model, args.input_size, args.batch, args.seconds)
        decode = decode_only(paths, args.input_size, args.batch)
        chunked = {autotune: per_chunk(model, paths, args.input_size, args.batch, autotune)
                   for autotune in (True, False)}
        summary = embed_images(name, split=args.split, version=args.version, batch=args.batch)
        bare_after = model_only(model, args.input_size, args.batch, args.seconds / 2)  # load drifts on shared cores
    finally:
        with begin() as conn:
            conn.execute(sa.text("DELETE FROM models WHERE name = :n"), {"n": name})
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{args.backbone}, dim {args.dim}, input {args.input_size} px, batch {args.batch}, "
          f"{len(paths)} images of {args.split} {args.version}, {os.cpu_count()} CPU cores")
    print(f"{'':28}{'images/s':>10}{'vs model':>10}")
    ref = (bare + bare_after) / 2
    for label, rate in (("model only (before)", bare), ("model only (after)", bare_after),
                        ("decode only (tf.data)", decode),
                        ("per chunk, autotuned", chunked[True][0]), ("per chunk, fixed", chunked[False][0]),
                        ("geoloc embed (end to end)", summary.images_per_s)):
        print(f"{label:28}{rate:>10.1f}{rate / ref:>10.0%}")
    print(f"per chunk of {CHUNK}: {chunked[True][1]:.1f} s autotuned and {chunked[False][1]:.1f} s fixed "
          "between the last batch and the end of the pipelines")
    print(f"embed: {summary.embedded} images in {summary.seconds:.1f} s; the writer thread spent "
          f"{summary.write_seconds:.1f} s storing (overlapped); HNSW build {summary.index_seconds:.1f} s")


if __name__ == "__main__":
    main()
