"""Training and inference images/s of every offered backbone on this machine (random pixels, no I/O).

Training = one optimizer step of the multi-similarity loss on a P x K batch (as `geoloc train`);
inference = the embedder in inference mode on batches of 64 (as `geoloc embed`).

    .venv/bin/python benchmarks/model_speed.py                 # all backbones, 224 px and 160 px
    .venv/bin/python benchmarks/model_speed.py --backbones mobilenetv3small --sizes 160
    .venv/bin/python benchmarks/model_speed.py --backbones mobilenetv3small --sizes 192 \
        --policies float32,mixed_bfloat16          # Keras mixed precision against float32
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from geoloc.model.backbones import BACKBONES  # noqa: E402
from geoloc.model.loss import multi_similarity_loss  # noqa: E402
from geoloc.model.net import build_model  # noqa: E402


def _rate(fn, images_per_call: int, min_seconds: float, min_calls: int) -> float:
    fn()  # trace + warm-up
    fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return calls * images_per_call / (time.perf_counter() - start)


def training_step(model):
    """One Adam step of the multi-similarity loss on a batch (pixels, place labels), as a tf.function."""
    optimizer = keras.optimizers.Adam(1e-4)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = multi_similarity_loss(tf.cast(model(x, training=True), tf.float32), y)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def measure(backbone: str, size: int, batch: int, seconds: float, policy: str) -> tuple[float, float]:
    keras.mixed_precision.set_global_policy(policy)
    model = build_model(backbone, 256, size, "none")
    step = training_step(model)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    y = tf.constant(np.repeat(np.arange(batch // 4), 4))
    xi = tf.constant(rng.uniform(0, 255, (64, size, size, 3)).astype(np.float32))

    @tf.function
    def infer():
        return model(xi, training=False)

    train = _rate(lambda: float(step(x, y)), batch, seconds, 2)
    infer_rate = _rate(lambda: infer().numpy(), 64, seconds, 2)
    return train, infer_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default=",".join(BACKBONES))
    ap.add_argument("--sizes", default="224,160")
    ap.add_argument("--batch", type=int, default=32, help="training batch (P x K, K = 4)")
    ap.add_argument("--seconds", type=float, default=15.0, help="minimum timed seconds per measurement")
    ap.add_argument("--policies", default="float32", help="Keras dtype policies, e.g. float32,mixed_bfloat16")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    policies = args.policies.split(",")
    show_policy = policies != ["float32"]  # float32 alone: rows name the backbone only
    width = 34 if show_policy else 18
    print(f"CPU threads: {os.cpu_count()}, TensorFlow {tf.__version__}, training batch {args.batch}")
    print(f"{'backbone':{width}}" + "".join(f"{f'train@{s}':>11}{f'infer@{s}':>11}" for s in sizes) + "   (images/s)")
    for name in args.backbones.split(","):
        for policy in policies:
            cells = []
            for size in sizes:
                train, infer = measure(name, size, args.batch, args.seconds, policy)
                cells.append(f"{train:11.1f}{infer:11.1f}")
                keras.backend.clear_session()
            label = f"{name} {policy}" if show_policy else name
            print(f"{label:{width}}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
