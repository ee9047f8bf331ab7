"""The training input pipeline with tf.data's autotuning on and off, side by side in one run.

    .venv/bin/python benchmarks/train_pipeline_bench.py                  # 6 epochs of 150 steps each way
    .venv/bin/python benchmarks/train_pipeline_bench.py --epochs 3 --images 2000

`geoloc train` builds one tf.data pipeline per epoch (geoloc.model.data.training_dataset: batches
gathered from the in-RAM cache, augmented in parallel) and runs the training step on it. This runs
the same pipeline and the same kind of step (MobileNetV3-Small, 512-d, multi-similarity loss, P x K
batches of 8 x 4) on real images of the training split, one epoch with autotuning on, then one with
it off (the product's setting), alternately, and prints per epoch the training images/s and the
seconds between the last step and the end of the pipeline: time that no step uses.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import tensorflow as tf  # noqa: E402

from geoloc.db.engine import begin  # noqa: E402
from geoloc.imagefile import image_file  # noqa: E402
from geoloc.model.data import Augment, cache_side, decode_cache, training_dataset  # noqa: E402
from geoloc.model.loss import multi_similarity_loss  # noqa: E402
from geoloc.model.net import build_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6, help="epochs of each setting")
    ap.add_argument("--steps", type=int, default=150, help="steps per epoch (geoloc train's default)")
    ap.add_argument("--images", type=int, default=3000, help="training images decoded into the cache")
    ap.add_argument("--input-size", type=int, default=192)
    args = ap.parse_args()

    with begin() as conn:
        rows = conn.execute(sa.text("SELECT root, path FROM images WHERE split = 'train' ORDER BY id LIMIT :n"),
                            {"n": args.images}).all()
    if not rows:
        raise SystemExit("no training images: import them first (geoloc ingest images)")
    cache = decode_cache([image_file(r) for r in rows], cache_side(args.input_size))

    keras.utils.set_random_seed(0)
    model = build_model("mobilenetv3small", 512, args.input_size, "none")
    optimizer = keras.optimizers.Adam(1e-4)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = multi_similarity_loss(model(x, training=True), y)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 4)[None].repeat(args.steps, 0)
    aug = Augment.scaled(1.0)
    warm = training_dataset(cache, rng.integers(0, len(cache), (2, 32)), labels[:2], args.input_size, 0, 0, aug)
    for _, x, y in warm:  # trace the step before anything is timed
        float(step(x, y))

    print(f"{len(cache)} training images at {cache.shape[1]} px, input {args.input_size} px, "
          f"{args.steps} steps of 32 images per epoch, {os.cpu_count()} CPU cores")
    print(f"{'epoch':>5} {'autotuning':>10} {'images/s':>9} {'end of pipeline s':>18}")
    totals = {True: [0.0, 0.0], False: [0.0, 0.0]}  # steps seconds, end seconds
    for epoch in range(args.epochs):
        batches = rng.integers(0, len(cache), (args.steps, 32))
        for autotune in (True, False):
            ds = training_dataset(cache, batches, labels, args.input_size, 0, epoch * args.steps, aug,
                                  autotune=autotune)
            start = last = time.perf_counter()
            for _, x, y in ds:
                float(step(x, y))
                last = time.perf_counter()
            end = time.perf_counter() - last
            totals[autotune][0] += last - start
            totals[autotune][1] += end
            print(f"{epoch + 1:>5} {'on' if autotune else 'off':>10} {args.steps * 32 / (last - start):>9.1f} "
                  f"{end:>18.2f}", flush=True)
    for autotune, (steps_s, end_s) in totals.items():
        images = args.epochs * args.steps * 32
        print(f"autotuning {'on ' if autotune else 'off'}: {images / steps_s:.1f} images/s while stepping, "
              f"{end_s:.1f} s at pipeline ends, {images / (steps_s + end_s):.1f} images/s in all")


if __name__ == "__main__":
    main()
