"""Embedding a photo held in memory, exactly as `geoloc search` embeds the same file.

The library's embedders (geoloc.retrieval.embed) read image files; an upload is never written to
disk, so this adapter turns the uploaded bytes into the same vector: the thumbnail baseline reads
them with its own decoder (`thumbnail_vector` on a byte stream), a Keras model gets them decoded by
TensorFlow and resized by `resize_for_model`, as `geoloc.model.data.decode_file` does for a file.
The bytes have passed `geoloc.imagefile.open_image` before either decoder sees them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..retrieval.baseline import THUMBNAIL_BACKBONE, thumbnail_vector
from ..retrieval.embed import check_dim


@dataclass
class QueryEmbedder:
    """One registered model, loaded once, turning image bytes into its (dim,) unit vector."""

    name: str
    model_id: int
    dim: int
    input_size: int
    _vectors: Callable[[bytes], np.ndarray]

    def embed(self, data: bytes) -> np.ndarray:
        return check_dim(self.name, self.dim, self._vectors(data))[0]


def _keras_vectors(model, size: int) -> Callable[[bytes], np.ndarray]:
    import tensorflow as tf

    from ..model.data import resize_for_model

    spec = tf.TensorSpec((None, size, size, 3), tf.float32)
    infer = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    infer(tf.zeros((1, size, size, 3)))  # trace once at load time, not on the first request

    def vectors(data: bytes) -> np.ndarray:
        # the same decoding as geoloc.model.data.decode_file, from bytes instead of a file
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        return infer(resize_for_model(image, size)[None]).numpy()

    return vectors


def load_query_embedder(conn, name: str) -> QueryEmbedder:
    """The registered model NAME (or the thumbnail baseline) ready to embed uploads; read-only."""
    from ..db.models import get_model

    row = get_model(conn, name)
    if row.backbone == THUMBNAIL_BACKBONE:
        size = row.input_size
        return QueryEmbedder(row.name, row.id, row.dim, size,
                             lambda data: thumbnail_vector(io.BytesIO(data), size)[None])
    from ..model.registry import load_embedder

    model, row = load_embedder(conn, name)
    return QueryEmbedder(row.name, row.id, row.dim, row.input_size, _keras_vectors(model, row.input_size))
