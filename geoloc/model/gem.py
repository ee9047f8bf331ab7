"""Generalised-mean (GeM) pooling and L2 normalisation, the aggregator of the original model.

GeM(x)_c = (mean_{h,w} max(x_{h,w,c}, eps)^p)^(1/p): p = 1 is average pooling, large p tends to max
pooling. Values are clamped at eps first because fractional powers of negatives are undefined.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="geoloc")
class GeM(keras.layers.Layer):
    """(N, H, W, C) -> (N, C); p fixed (default 3) or trainable."""

    def __init__(self, p: float = 3.0, trainable_p: bool = False, eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.p_init = float(p)
        self.trainable_p = bool(trainable_p)
        self.eps = float(eps)

    def build(self, input_shape):
        self.p = self.add_weight(name="p", shape=(), initializer=keras.initializers.Constant(self.p_init),
                                 trainable=self.trainable_p)

    def call(self, x):
        x = ops.maximum(x, self.eps)
        return ops.power(ops.mean(ops.power(x, self.p), axis=(1, 2)), 1.0 / self.p)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "p": self.p_init, "trainable_p": self.trainable_p, "eps": self.eps}


@keras.saving.register_keras_serializable(package="geoloc")
class L2Normalize(keras.layers.Layer):
    """Unit length along the last axis (a zero vector stays zero instead of becoming NaN)."""

    def __init__(self, eps: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.eps = float(eps)

    def call(self, x):
        return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), self.eps))

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}
