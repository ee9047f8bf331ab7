"""The embedder: pixels -> backbone -> L2 -> GeM -> dense projection -> L2, as in the original project.

`build_model` is the single constructor used by training, `geoloc embed` and tests, so a registered
model is rebuilt from its row (backbone, dim, input size, GeM p) and its weights file only.
"""

from __future__ import annotations

from pathlib import Path

import keras

from ..errors import ConfigError, InputError
from .backbones import backbone_spec, make_backbone
from .gem import GeM, L2Normalize
from .train_config import DEFAULT_DIM, default_bn_momentum

WEIGHTS_HINT = "use --weights none (train from scratch), imagenet (Keras' download) or the path of a .keras/.weights.h5 file"


def build_model(backbone: str, dim: int = DEFAULT_DIM, input_size: int | None = None, weights: str = "none",
                freeze: int = 0, gem_p: float = 3.0, trainable_p: bool = False,
                bn_momentum: float | None = None, whiten_dim: int | None = None) -> keras.Model:
    """A keras.Model mapping float32 (N, S, S, 3) 0..255 RGB to L2-normalised (N, dim) embeddings.

    weights: "none" (random init), "imagenet" (Keras' own download of the backbone) or a path to a
    .keras model / .h5 weights file holding either a whole geoloc embedder of the same shape or just
    the backbone. bn_momentum: set on every BatchNorm layer; None = 0.9 from scratch, 0.99 pretrained.
    dim: 0 keeps the backbone's channel count (no projection). input_size: None = the backbone's default.
    whiten_dim: append a learned whitening of that many outputs (see `append_whitening`).
    """
    spec = backbone_spec(backbone)  # unknown names fail before anything is built
    if input_size is None:
        input_size = spec.default_size
    if dim < 0:
        raise ConfigError(f"dimension {dim} must be positive (or 0 for no projection)")
    weights = str(weights)
    imagenet = weights == "imagenet"
    net = make_backbone(backbone, input_size, imagenet=imagenet)
    net.name = "backbone"
    pixels = keras.Input((input_size, input_size, 3), name="pixels", dtype="float32")
    x = net(pixels)
    x = L2Normalize(name="l2_features")(x)
    x = GeM(p=gem_p, trainable_p=trainable_p, name="gem")(x)
    if dim and dim != x.shape[-1]:
        x = keras.layers.Dense(dim, name="projection")(x)
    model = keras.Model(pixels, L2Normalize(name="l2_embedding")(x), name=f"geoloc_{backbone}")
    if whiten_dim:
        model = append_whitening(model, whiten_dim)

    if weights not in ("none", "imagenet"):
        load_start_weights(model, Path(weights))
    # The Keras applications build their BatchNorm layers with momentum 0.999. From scratch the running
    # statistics would then lag the fast-changing weights for thousands of steps, so "none" gets 0.9;
    # pretrained weights ("imagenet" or a file) change slowly and get Keras' default 0.99.
    set_bn_momentum(model, default_bn_momentum(weights) if bn_momentum is None else bn_momentum)
    if freeze:
        freeze_layers(net, freeze)
    return model


WHITEN_LAYER = "whitening"


def append_whitening(model: keras.Model, dims: int) -> keras.Model:
    """MODEL followed by a whitening: a Dense layer of DIMS units and an L2 normalisation.

    With kernel = P and bias = -m P (set by `set_whitening`) the output is normalise((e - m) P) for
    MODEL's embedding e: the whitening (mean m, projection P) of geoloc.retrieval.postprocess, learned
    on the embeddings of MODEL, applied inside the network, so embedding and search need nothing else.
    """
    if int(dims) < 1:
        raise ConfigError(f"whitening dimension {dims} must be at least 1")
    x = keras.layers.Dense(int(dims), name=WHITEN_LAYER)(model.output)
    return keras.Model(model.input, L2Normalize(name="l2_whitened")(x), name=model.name)


def set_whitening(model: keras.Model, projection, bias) -> None:
    """Load a whitening's kernel (D, d) and bias (d,), float32 arrays, into the layer `append_whitening` added."""
    model.get_layer(WHITEN_LAYER).set_weights([projection, bias])


def whitened_network(model: keras.Model, backbone: str, whitening, **build_args) -> keras.Model:
    """A new network: MODEL (built by build_model(BACKBONE, **BUILD_ARGS)) with its weights, followed by
    WHITENING (geoloc.model.whitening.Whitening) as a Dense layer and an L2 normalisation."""
    import numpy as np

    net = copy_network(model, backbone, **{**build_args, "whiten_dim": whitening.dims})
    set_whitening(net, whitening.projection.astype(np.float32), whitening.bias.astype(np.float32))
    return net


def copy_network(model: keras.Model, backbone: str, **build_args) -> keras.Model:
    """A new network built by build_model(BACKBONE, **BUILD_ARGS) holding MODEL's weights layer by layer:
    the same network at another input side (no weight depends on it), or with layers added after it."""
    net = build_model(backbone, weights="none", **build_args)
    for layer in model.layers:
        net.get_layer(layer.name).set_weights(layer.get_weights())
    return net


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer("backbone")


def set_bn_momentum(model: keras.Model, momentum: float) -> int:
    """Set momentum on every BatchNormalization layer (nested ones too); returns how many."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
            count += 1
    return count


def freeze_layers(backbone: keras.Model, n: int) -> None:
    """Freeze the first n backbone layers (frozen BatchNorm layers then also run in inference mode)."""
    if not 0 <= n <= len(backbone.layers):
        raise ConfigError(f"--freeze {n}: the backbone has {len(backbone.layers)} layers")
    for layer in backbone.layers[:n]:
        layer.trainable = False


def load_start_weights(model: keras.Model, path: Path) -> str:
    """Load a saved model or weights file into the embedder or, failing that, into its backbone.

    Returns "embedder" or "backbone" (what the file fitted); InputError naming the file otherwise.
    """
    if not path.is_file():
        raise InputError(f"{path}: weights file not found", hint=WEIGHTS_HINT)
    targets = (("embedder", model), ("backbone", backbone_of(model)))
    if path.suffix == ".keras":
        try:
            source = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # zip, config and h5 errors all mean the same to the user
            raise InputError(f"{path}: not a readable Keras model ({_first_line(exc)})", hint=WEIGHTS_HINT) from None
        values = source.get_weights()
        for what, target in targets:
            if [tuple(w.shape) for w in target.weights] == [tuple(v.shape) for v in values]:
                target.set_weights(values)
                return what
    elif path.name.endswith(".h5"):
        stored = _h5_shapes(path)
        for what, target in targets:
            # same multiset of array shapes = same architecture; only then load (Keras would otherwise
            # load what fits, warn about the rest and leave it randomly initialised)
            if stored == sorted(tuple(w.shape) for w in target.weights):
                try:
                    target.load_weights(path)
                except Exception as exc:  # same shapes but another layout (e.g. a legacy file)
                    raise InputError(f"{path}: cannot load into {what} ({_first_line(exc)})",
                                     hint=WEIGHTS_HINT) from None
                return what
    else:
        raise InputError(f"{path}: not a .keras model or .h5 weights file", hint=WEIGHTS_HINT)
    raise InputError(
        f"{path}: its weights fit neither this embedder nor its backbone "
        f"({model.name}, input {model.input_shape[1]} px, dim {model.output_shape[-1]})",
        hint=WEIGHTS_HINT,
    )


def _h5_shapes(path: Path) -> list[tuple]:
    """Sorted shapes of every array in an HDF5 weights file; InputError when it is not HDF5."""
    import h5py

    shapes: list[tuple] = []
    try:
        with h5py.File(path, "r") as fh:
            fh.visititems(lambda _, obj: shapes.append(tuple(obj.shape)) if isinstance(obj, h5py.Dataset) else None)
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 weights file ({_first_line(exc)})", hint=WEIGHTS_HINT) from None
    return sorted(shapes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
