"""geoloc's processes allocate TensorFlow's CPU tensors from the pooling (BFC) allocator, unless the user
chose otherwise: only a pooling allocator keeps statistics, so tf.config.experimental.get_memory_info
answers for it and refuses for plain malloc. The probes run with TensorFlow's oneDNN kernels off
(TF_ENABLE_ONEDNN_OPTS=0, their default on CPUs without AVX-512 VNNI): with them on, TensorFlow pools
whatever the variable says, so the test would pass on such a machine without geoloc's setting."""

import os
import subprocess
import sys

PROBE = """
import geoloc.model.net
import tensorflow as tf
x = tf.ones((512, 512))
y = x @ x
try:
    info = tf.config.experimental.get_memory_info("CPU:0")
    print("pool", info["peak"] >= 2 * 512 * 512 * 4)
except ValueError:
    print("malloc")
"""


def _probe(allocator: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    if allocator is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = allocator
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_geoloc_uses_the_pooling_allocator_by_default():
    assert _probe(None) == "pool True"


def test_the_users_choice_wins():
    assert _probe("false") == "malloc"
