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


def _mnv3(cls):
    # include_preprocessing=True puts the Rescaling layer inside the model: it takes 0..255 pixels
    return lambda **kw: cls(include_preprocessing=True, minimalistic=False, **kw)


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenetv3small": BackboneSpec(_mnv3(keras.applications.MobileNetV3Small), False, 192),  # CPU default
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
    if input_size < 32:
        raise ConfigError(f"input size {input_size} is too small (at least 32 pixels)")
    shape = (input_size, input_size, 3)
    weights = "imagenet" if imagenet else None
    if not spec.caffe_input:
        return spec.build(include_top=False, weights=weights, input_shape=shape)
    # preprocessing as the first layer of the same flat model, so --freeze N counts the real layers
    pixels = keras.Input(shape, name="pixels")
    return spec.build(include_top=False, weights=weights, input_shape=shape,
                      input_tensor=CaffePreprocess(name="caffe_preprocess")(pixels))
