"""Test helper: image files as one float32 array, through the same decoder as training and embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from geoloc.model.data import iter_image_batches


def load_images(paths: Sequence[Path], size: int) -> np.ndarray:
    """float32 (N, size, size, 3) 0..255 RGB; InputError("<path>: not a decodable image ...") on bad files."""
    batches = list(iter_image_batches(paths, size, 64))
    return np.concatenate(batches) if batches else np.zeros((0, size, size, 3), np.float32)
