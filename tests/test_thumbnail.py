"""The baseline's vector (`geoloc.thumbnail`), shared by `evaluate` and by `train`'s validation."""

from __future__ import annotations

import numpy as np
import pytest

from geoloc.thumbnail import thumbnails_of_arrays, unit_vector


def test_a_thumbnail_is_the_block_average_minus_its_mean_normalised():
    rng = np.random.default_rng(0)
    # values that stay exact in 8 bits: every 2x2 block holds one value, so its average is that value
    blocks = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    image = blocks.repeat(2, axis=0).repeat(2, axis=1)  # 32 x 32
    v = blocks.astype(np.float64).reshape(-1)
    expected = (v - v.mean()) / np.linalg.norm(v - v.mean())
    got = thumbnails_of_arrays(image[None])
    assert got.shape == (1, 768) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, atol=1e-6)


def test_a_flat_image_gives_the_constant_unit_vector():
    got = thumbnails_of_arrays(np.full((1, 20, 30, 3), 77, np.uint8))[0]
    np.testing.assert_allclose(got, np.full(768, 1 / np.sqrt(768)), atol=1e-7)
    assert unit_vector(np.zeros(4)) == pytest.approx([0.5] * 4)


def test_no_images_no_rows():
    assert thumbnails_of_arrays(np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 768)
