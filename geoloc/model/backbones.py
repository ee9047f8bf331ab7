"""The backbones `geoloc train` offers, and the one place that knows how each wants its pixels.

Every model in geoloc takes float32 RGB pixels in 0..255. MobileNetV3 and EfficientNet carry their own
rescaling layer, so they get the pixels as they are; ResNet50 expects Caffe-style input (BGR, ImageNet
mean subtracted), which a serialisable layer does inside the model, so callers never preprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras

from ..errors import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[..., keras.Model]
    caffe_input: bool  # True: needs BGR mean-subtracted input (ResNet50), False: takes 0..255 RGB itself
    default_size: int = 224  # ImageNet's side; the CPU default trains from scratch at 192 (measured in benchmarks/README.md)
    embed_scale: float = 1.0  # inference side / training side tried after training (see default_embed_size)


def _mnv3(cls):
    # include_preprocessing=True puts the Rescaling layer inside the model: it takes 0..255 pixels
    return lambda **kw: cls(include_preprocessing=True, minimalistic=False, **kw)


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenetv3small": BackboneSpec(_mnv3(keras.applications.MobileNetV3Small), False, 192, 5 / 3),  # CPU default
    "mobilenetv3large": BackboneSpec(_mnv3(keras.applications.MobileNetV3Large), False),  # light
    "efficientnetb0": BackboneSpec(keras.applications.EfficientNetB0, False),  # light
    "resnet50": BackboneSpec(keras.applications.ResNet50, True),  # the original; slow on CPU
}


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of a backbone name; ConfigError listing the choices otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"unknown backbone '{name}' (choose one of: {', '.join(BACKBONES)})"
        ) from None


MIN_INPUT_SIZE = 32  # the smallest side a backbone is built for
EMBED_SIDE_STEP = 32  # an inference side is a multiple of the backbones' output stride


def default_embed_size(backbone: str, input_size: int) -> int:
    """The inference side `geoloc train` tries for a network trained at INPUT_SIZE: the backbone's
    embed_scale times it, rounded to a multiple of 32 (never below INPUT_SIZE). Random crops of 64-100 %
    of the area show objects larger while training than whole images show them at the same side, so a
    larger side at inference matches them again (benchmarks/README.md measures 192 -> 256 / 320)."""
    scale = backbone_spec(backbone).embed_scale
    if scale == 1.0:
        return input_size
    return max(input_size, int(round(input_size * scale / EMBED_SIDE_STEP)) * EMBED_SIDE_STEP)


@keras.saving.register_keras_serializable(package="geoloc")
class CaffePreprocess(keras.layers.Layer):
    """0..255 RGB -> BGR minus the ImageNet mean, as keras.applications.resnet50.preprocess_input does."""

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, x):
        bgr = keras.ops.flip(x, axis=-1)
        return bgr - keras.ops.convert_to_tensor(self.MEAN_BGR, dtype=x.dtype)


def make_backbone(name: str, input_size: int, imagenet: bool = False) -> keras.Model:
    """A headless backbone taking (N, S, S, 3) 0..255 RGB floats and returning its last feature map."""
    spec = backbone_spec(name)
    if input_size < MIN_INPUT_SIZE:
        raise ConfigError(f"input size {input_size} is too small (at least {MIN_INPUT_SIZE} pixels)")
    shape = (input_size, input_size, 3)
    weights = "imagenet" if imagenet else None
    if not spec.caffe_input:
        return spec.build(include_top=False, weights=weights, input_shape=shape)
    # preprocessing as the first layer of the same flat model, so --freeze N counts the real layers
    pixels = keras.Input(shape, name="pixels")
    return spec.build(include_top=False, weights=weights, input_shape=shape,
                      input_tensor=CaffePreprocess(name="caffe_preprocess")(pixels))
