"""Image loading shared by training, validation and `geoloc embed`, plus the training input pipeline.

One decoding/resizing path (`decode_file` + `resize_for_model`) feeds both training and inference, so
the model sees the same pixels in both. Training decodes every image once per run into an in-RAM uint8
cache (the shared data set fits easily) and then only gathers, crops and colour-jitters batches.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from ..errors import InputError
from .readable import check_image_header, first_line, reason_of

CACHE_SCALE = 1.4  # cached side = 1.4 x input size (160 -> 224, the shared images' own size): room for crops
# Every pipeline here runs with tf.data's autotuning off and a fixed parallelism: on 2 cores autotuning
# stalled the end of a pipeline for 1-5 s (once per chunk of `geoloc embed`, once per training epoch;
# up to 37 s after the first epoch) and was slower otherwise (benchmarks/README.md, "Embedding
# throughput" and "Training input pipeline").
DECODE_CALLS = max(2, os.cpu_count() or 1)  # files decoded at once
AUGMENT_CALLS = 2  # training batches augmented at once, beside the training step


def fixed(ds: tf.data.Dataset) -> tf.data.Dataset:
    """DS with tf.data's autotuning off: its parallelism and buffers as given."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def cache_side(size: int) -> int:
    return int(round(size * CACHE_SCALE))


# ---------------------------------------------------------------- decoding (training and inference)

def decode_file(path: tf.Tensor) -> tf.Tensor:
    """uint8 (H, W, 3) RGB of one image file (JPEG, PNG, GIF, BMP, WebP; alpha dropped)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape((None, None, 3))
    return image


def decode_map(ds: tf.data.Dataset, fn, autotune: bool = False) -> tf.data.Dataset:
    """DS mapped by FN in order, DECODE_CALLS elements at a time, with tf.data's autotuning off
    (AUTOTUNE true: tf.data chooses, with autotuning on; benchmarks/embed_bench.py compares the two)."""
    if autotune:
        return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return fixed(ds.map(fn, num_parallel_calls=DECODE_CALLS, deterministic=True))


def resize_for_model(images: tf.Tensor, size: int) -> tf.Tensor:
    """float32 0..255 pixels at (size, size): antialiased bilinear, identical for training and inference."""
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    same = tf.logical_and(tf.equal(shape[-3], size), tf.equal(shape[-2], size))
    resized = tf.cond(same, lambda: images,
                      lambda: tf.image.resize(images, (size, size), method="bilinear", antialias=True))
    return tf.clip_by_value(resized, 0.0, 255.0)


def check_image_files(paths: Sequence[Path]) -> None:
    """Fail early, naming the file, on anything geoloc.imagefile refuses or no decoder here reads
    (geoloc.model.readable: file and header only, no pixel decoded)."""
    for path in paths:
        check_image_header(path)


def _find_undecodable(paths: Sequence[Path], exc: Exception) -> InputError:
    for path in paths:
        try:
            decode_file(tf.constant(str(path)))
        except (tf.errors.OpError, ValueError) as inner:
            return InputError(f"{path}: not a decodable image ({first_line(inner)})")
    return InputError(f"{paths[0]}..{paths[-1]}: images could not be decoded ({first_line(exc)})")


def image_dataset(paths: Sequence[Path], size: int, batch: int) -> tf.data.Dataset:
    """Batches of float32 (n, size, size, 3) 0..255 pixels, in the order of `paths` (parallel decode).

    Missing files and non-images raise InputError here; a file that looks like an image but fails to
    decode surfaces as a tf error while iterating: use `iter_image_batches` to get InputError for it too.
    """
    paths = [Path(p) for p in paths]
    check_image_files(paths)
    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths] or tf.constant([], tf.string))
    ds = decode_map(ds, lambda p: resize_for_model(decode_file(p), size))
    return ds.batch(batch).prefetch(2)


def iter_image_batches(paths: Sequence[Path], size: int, batch: int) -> Iterator[np.ndarray]:
    """`image_dataset` as numpy batches; a corrupt file raises InputError naming it."""
    paths = [Path(p) for p in paths]
    it = iter(image_dataset(paths, size, batch))
    start = 0
    while True:
        try:
            images = next(it)
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            raise _find_undecodable(paths[start:start + batch], exc) from None
        start += len(images)
        yield images.numpy()


def _decode_error(path: Path) -> str:
    """Why TensorFlow could not decode PATH (decoded alone again: ignore_errors keeps no message)."""
    try:
        decode_file(tf.constant(str(path)))
    except (tf.errors.OpError, ValueError) as exc:
        detail = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", first_line(exc))  # TF's op decoration
        return f"not a readable image ({detail or type(exc).__name__})"
    return "not a readable image"


def iter_keyed_batches(keys: Sequence[int], paths: Sequence[Path], size: int, batch: int, skipped: list,
                       autotune: bool = False) -> Iterator[tuple[np.ndarray, tf.Tensor]]:
    """(keys, float32 (n, size, size, 3) pixel tensor) batches of the images that decode, in order.

    A file that fails `check_image_header` or TensorFlow's decoder is not fatal: it is appended to
    SKIPPED as (key, path, reason) and left out. Each key travels through tf.data with its own pixels
    (a dropped element takes its key with it), so keys and pixels can never shift against each other.
    """
    good: list[tuple[int, Path]] = []
    for key, path in zip(keys, paths):
        try:
            good.append((int(key), check_image_header(Path(path))))
        except InputError as exc:
            skipped.append((key, Path(path), reason_of(Path(path), exc)))
    if not good:
        return
    ds = tf.data.Dataset.from_tensor_slices((np.array([k for k, _ in good], np.int64), [str(p) for _, p in good]))
    ds = decode_map(ds, lambda k, p: (k, resize_for_model(decode_file(p), size)), autotune)
    done = 0  # position in GOOD up to which every key has come out or been reported
    for out_keys, pixels in ds.ignore_errors().batch(batch).prefetch(2):
        out_keys = out_keys.numpy()
        came = set(out_keys.tolist())
        last = done
        while good[last][0] != out_keys[-1]:
            last += 1
        for key, path in good[done:last + 1]:
            if key not in came:
                skipped.append((key, path, _decode_error(path)))
        done = last + 1
        yield out_keys, pixels  # a tensor: the model takes it as it is, no NumPy round trip
    for key, path in good[done:]:
        skipped.append((key, path, _decode_error(path)))


def decode_cache(paths: Sequence[Path], side: int, progress: str | None = None) -> np.ndarray:
    """uint8 (N, side, side, 3): every image decoded once and resized (if needed) for an in-RAM cache."""
    from tqdm import tqdm

    paths = [Path(p) for p in paths]
    check_image_files(paths)
    out = np.empty((len(paths), side, side, 3), np.uint8)
    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths] or tf.constant([], tf.string))
    ds = decode_map(ds, lambda p: tf.cast(tf.round(resize_for_model(decode_file(p), side)), tf.uint8))
    ds = ds.batch(128).prefetch(2)
    bar = tqdm(total=len(paths), desc=progress or "decoding", unit="img", disable=progress is None, leave=False)
    start, it = 0, iter(ds)
    while True:
        try:
            chunk = next(it).numpy()
        except StopIteration:
            break
        except tf.errors.OpError as exc:
            raise _find_undecodable(paths[start:start + 128], exc) from None
        out[start:start + len(chunk)] = chunk
        start += len(chunk)
        bar.update(len(chunk))
    bar.close()
    return out


# ---------------------------------------------------------------- training augmentation

@dataclass(frozen=True)
class Augment:
    """Mild, heading-preserving augmentation: no flips or rotations (a mirrored street is another place)."""

    min_area: float = 0.64     # random crop keeps 64..100 % of the image area
    max_aspect: float = 1.15   # and an aspect ratio within 1/1.15 .. 1.15
    brightness: float = 0.12   # +- fraction of 255
    contrast: float = 0.2      # factor 1 +- 0.2
    saturation: float = 0.2    # factor 1 +- 0.2

    @classmethod
    def scaled(cls, strength: float) -> "Augment":
        """The mild default scaled: 0 none, 1 the default, 2 crops down to 28 % of the area and twice the jitter."""
        mild = cls()
        return cls(min_area=1.0 - (1.0 - mild.min_area) * strength, max_aspect=mild.max_aspect ** strength,
                   brightness=mild.brightness * strength, contrast=mild.contrast * strength,
                   saturation=mild.saturation * strength)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, size: int, aug: Augment) -> tf.Tensor:
    """uint8 (B, C, C, 3) -> float32 (B, size, size, 3) 0..255; random but a pure function of `seed`."""
    n = tf.shape(images)[0]
    side = tf.shape(images)[1]
    x = tf.cast(images, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 8)

    def uniform(i, lo, hi, shape=None):
        return tf.random.stateless_uniform(shape if shape is not None else (n,), seeds[i], lo, hi)

    if aug.min_area < 1.0 or aug.max_aspect > 1.0:
        # a random window of whole pixels, then exactly the inference resize (no second resampling)
        fside = tf.cast(side, tf.float32)
        area = uniform(0, aug.min_area, 1.0)
        log_r = tf.math.log(aug.max_aspect)
        ratio = tf.exp(uniform(1, -log_r, log_r))
        h = tf.cast(tf.round(fside * tf.minimum(tf.sqrt(area / ratio), 1.0)), tf.int32)
        w = tf.cast(tf.round(fside * tf.minimum(tf.sqrt(area * ratio), 1.0)), tf.int32)
        y0 = tf.cast(uniform(2, 0.0, 1.0) * tf.cast(side - h + 1, tf.float32), tf.int32)
        x0 = tf.cast(uniform(3, 0.0, 1.0) * tf.cast(side - w + 1, tf.float32), tf.int32)
        y0, x0 = tf.minimum(y0, side - h), tf.minimum(x0, side - w)

        def window(i):
            return resize_for_model(x[i, y0[i]:y0[i] + h[i], x0[i]:x0[i] + w[i], :], size)

        x = tf.map_fn(window, tf.range(n), fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32))
    else:
        x = resize_for_model(x, size)
    if aug.brightness:
        x = x + 255.0 * uniform(4, -aug.brightness, aug.brightness)[:, None, None, None]
    if aug.contrast:
        mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * uniform(5, 1 - aug.contrast, 1 + aug.contrast)[:, None, None, None] + mean
    if aug.saturation:
        gray = tf.reduce_mean(x, axis=3, keepdims=True)
        x = (x - gray) * uniform(6, 1 - aug.saturation, 1 + aug.saturation)[:, None, None, None] + gray
    return tf.clip_by_value(x, 0.0, 255.0)


def training_dataset(cache: np.ndarray, batches: np.ndarray, labels: np.ndarray, size: int, seed: int,
                     first_step: int, aug: Augment, autotune: bool = False) -> tf.data.Dataset:
    """(step, pixels, labels) for each row of `batches` (image indices into `cache`), in order.

    Gathering from the cache runs in a Python generator (numpy copies, no file reads); augmentation runs
    in parallel tf.data workers, seeded by (seed, global step) so a resumed run sees the same pixels.
    AUTOTUNE: with tf.data's autotuning on (benchmarks/train_pipeline_bench.py compares the two).
    """
    def gen():
        for i, idx in enumerate(batches):
            yield np.int64(first_step + i), cache[idx], labels[i]

    side = cache.shape[1]
    ds = tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec((), tf.int64),
        tf.TensorSpec((batches.shape[1], side, side, 3), tf.uint8),
        tf.TensorSpec((batches.shape[1],), tf.int64),
    ))

    def aug_fn(step, pixels, lab):
        s = tf.stack([tf.cast(seed, tf.int64), step])
        return step, augment_batch(pixels, s, size, aug), lab

    ds = ds.map(aug_fn, num_parallel_calls=AUGMENT_CALLS, deterministic=True).prefetch(2)
    return ds if autotune else fixed(ds)
