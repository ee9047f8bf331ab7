"""TensorFlow's CPU allocator side by side: the pooling (BFC) allocator geoloc uses against plain malloc.

    .venv/bin/python benchmarks/allocator_bench.py                      # MobileNetV3-Small, 192 px, ~5 min
    .venv/bin/python benchmarks/allocator_bench.py --size 160 --seconds 60

Each allocator runs in a child process of its own (TF_CPU_ALLOCATOR_USE_BFC=true / false: TensorFlow reads
it at its first allocation), one after the other, and measures two loops for --seconds each:

- step: benchmarks/model_speed.py's training step (multi-similarity loss, Adam) on a fixed batch of
  random pixels;
- pipeline: the same step fed by `geoloc train`'s input pipeline (geoloc.model.data.training_dataset:
  P x K batches gathered from a uint8 image cache at the cache side, cropped, resized and colour-jittered
  in tf.data workers), the cache as large as the training split's and filled with random pixels
  instead of decoded photos.

Printed per loop: training images/s, CPU seconds in user and kernel mode, minor page faults, and kernel
time and page faults per image: those two are where the allocators differ.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ALLOCATORS = (("pool (BFC)", "true"), ("malloc", "false"))


def child(size: int, batch: int, seconds: float, cache_images: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from model_speed import training_step  # this folder is on sys.path when run as a script

    from geoloc.model.data import Augment, cache_side, training_dataset
    from geoloc.model.net import build_model

    step = training_step(build_model("mobilenetv3small", 256, size, "none"))
    rng = np.random.default_rng(0)

    def timed(batches) -> dict:
        it = iter(batches)
        for _ in range(2):  # trace + warm-up
            float(step(*next(it)))
        before, start, n = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            float(step(*next(it)))
            n += 1
        elapsed, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        images = n * batch
        return {"images_per_s": images / elapsed, "user_s": after.ru_utime - before.ru_utime,
                "sys_s": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt,
                "images": images}

    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    y = tf.constant(np.repeat(np.arange(batch // 4), 4))

    def fixed():
        while True:
            yield x, y

    side = cache_side(size)
    cache = rng.integers(0, 256, (cache_images, side, side, 3), dtype=np.uint8)
    steps = 100_000
    idx = rng.integers(0, len(cache), (steps, batch))
    lab = np.repeat(np.arange(batch // 4), 4)[None, :].repeat(steps, 0)
    ds = training_dataset(cache, idx, lab, size, 0, 0, Augment())
    return {"step": timed(fixed()), "pipeline": timed((p, l) for _, p, l in ds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=192, help="training input side in pixels [192]")
    ap.add_argument("--batch", type=int, default=32, help="images per training batch [32]")
    ap.add_argument("--seconds", type=float, default=40.0, help="timed seconds per loop [40]")
    ap.add_argument("--cache-images", type=int, default=9579,
                    help="images in the pipeline's cache [9579: the training split, about 2 GB at 192 px]")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the allocator is in the env
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.size, args.batch, args.seconds, args.cache_images)))
        return
    results = {}
    for label, value in ALLOCATORS:
        env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": value}
        out = subprocess.run([sys.executable, __file__, "--child", "--size", str(args.size),
                              "--batch", str(args.batch), "--seconds", str(args.seconds),
                              "--cache-images", str(args.cache_images)],
                             env=env, capture_output=True, text=True, check=True)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"MobileNetV3-Small, {args.size} px, batch {args.batch}, {os.cpu_count()} CPU threads, "
          f"{args.seconds:g} s per loop, {args.cache_images:,} images in the pipeline's cache")
    print(f"{'loop':10} {'allocator':12} {'images/s':>9} {'user s':>8} {'sys s':>8} {'faults':>10} "
          f"{'sys ms/img':>11} {'faults/img':>11}")
    for loop in ("step", "pipeline"):
        for label, _ in ALLOCATORS:
            r = results[label][loop]
            print(f"{loop:10} {label:12} {r['images_per_s']:9.1f} {r['user_s']:8.1f} {r['sys_s']:8.1f} "
                  f"{r['faults']:10,} {1000 * r['sys_s'] / r['images']:11.1f} {r['faults'] / r['images']:11.0f}")


if __name__ == "__main__":
    main()
