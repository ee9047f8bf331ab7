"""The non-learned baseline's vector, computed in one place for `evaluate` (files, through
geoloc.retrieval.baseline) and for `train`'s validation (decoded images already in memory):
a SIZE x SIZE RGB thumbnail by area average (box filter), its own mean removed, L2-normalised."""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 16


def unit_vector(pixels: np.ndarray) -> np.ndarray:
    """float32 unit vector of PIXELS (any shape) minus their mean. A flat image becomes the constant
    unit vector, orthogonal to every mean-subtracted one, instead of an undefined 0/0."""
    v = np.asarray(pixels, np.float32).reshape(-1)
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    if norm < 1e-6:
        return np.full(v.shape, 1.0 / np.sqrt(v.size), np.float32)
    return (v / norm).astype(np.float32)


def thumbnail_of(im: Image.Image, size: int = SIZE) -> np.ndarray:
    """float32 (size*size*3,) baseline vector of a PIL image."""
    return unit_vector(np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BOX), np.float32))


def thumbnails_of_arrays(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """float32 (N, size*size*3) baseline vectors of uint8 (N, H, W, 3) images."""
    if len(images) == 0:
        return np.zeros((0, size * size * 3), np.float32)
    return np.stack([thumbnail_of(Image.fromarray(np.asarray(a, np.uint8)), size) for a in images])
