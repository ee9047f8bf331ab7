"""Multi-similarity loss with its pair mining (Wang et al., CVPR 2019), written for Keras 3 / TF.

For anchor i with cosine similarities S_ij to the other embeddings of the batch:
  mining keeps a negative j when S_ij + margin > min over positives of S_ik, and a positive j when
  S_ij - margin < max over negatives of S_ik (hard pairs relative to the other class);
  loss_i = 1/alpha log(1 + sum_kept_pos exp(-alpha (S_ij - base)))
         + 1/beta  log(1 + sum_kept_neg exp( beta (S_ij - base))).
The batch loss is the mean over all anchors (anchors with no kept pair contribute 0). Mining
thresholds carry no gradient. The defaults (geoloc.model.train_config) are Wang et al.'s.
"""

from __future__ import annotations

import tensorflow as tf

from .train_config import MS_ALPHA, MS_BASE, MS_BETA, MS_MARGIN


def pair_masks(labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(positive, negative) boolean (N, N) masks; an embedding is never its own positive."""
    labels = tf.reshape(labels, (-1,))
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    return tf.logical_and(same, tf.logical_not(eye)), tf.logical_not(same)


def mine_pairs(sim: tf.Tensor, pos: tf.Tensor, neg: tf.Tensor, margin: float = MS_MARGIN):
    """The multi-similarity miner: which positive and negative pairs take part in the loss."""
    sim = tf.stop_gradient(sim)
    big = tf.constant(1e9, sim.dtype)
    hardest_pos = tf.reduce_min(tf.where(pos, sim, big), axis=1, keepdims=True)   # least similar positive
    hardest_neg = tf.reduce_max(tf.where(neg, sim, -big), axis=1, keepdims=True)  # most similar negative
    keep_neg = tf.logical_and(neg, sim + margin > hardest_pos)
    keep_pos = tf.logical_and(pos, sim - margin < hardest_neg)
    return keep_pos, keep_neg


def _log1p_sum_exp(z: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """log(1 + sum_j mask_ij exp(z_ij)) per row, stable for large z (beta = 50)."""
    z = tf.where(mask, z, tf.constant(-1e9, z.dtype))
    zeros = tf.zeros_like(z[:, :1])
    return tf.reduce_logsumexp(tf.concat([zeros, z], axis=1), axis=1)


def multi_similarity_terms(embeddings: tf.Tensor, labels: tf.Tensor, alpha: float = MS_ALPHA, beta: float = MS_BETA,
                           base: float = MS_BASE, margin: float = MS_MARGIN, mine: bool = True) -> tf.Tensor:
    """Per-anchor losses (N,) for L2-normalised embeddings (N, D) with integer place labels (N,)."""
    embeddings = tf.convert_to_tensor(embeddings)
    sim = tf.matmul(embeddings, embeddings, transpose_b=True)
    pos, neg = pair_masks(labels)
    if mine:
        pos, neg = mine_pairs(sim, pos, neg, margin)
    pos_term = _log1p_sum_exp(-alpha * (sim - base), pos) / alpha
    neg_term = _log1p_sum_exp(beta * (sim - base), neg) / beta
    return pos_term + neg_term


def multi_similarity_loss(embeddings: tf.Tensor, labels: tf.Tensor, alpha: float = MS_ALPHA, beta: float = MS_BETA,
                          base: float = MS_BASE, margin: float = MS_MARGIN, mine: bool = True) -> tf.Tensor:
    """Scalar batch loss: the mean of `multi_similarity_terms` over all anchors."""
    return tf.reduce_mean(multi_similarity_terms(embeddings, labels, alpha, beta, base, margin, mine))


def cell_classification_loss(logits: list[tf.Tensor], labels: tf.Tensor) -> tf.Tensor:
    """Mean over levels of the softmax cross-entropy of each level's cell logits.

    labels: (N, levels) class indices; -1 (an image outside every cell of a level) is left out.
    """
    losses = []
    for level, level_logits in enumerate(logits):
        y = labels[:, level]
        valid = y >= 0
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(y, 0), level_logits)
        weight = tf.cast(valid, ce.dtype)
        losses.append(tf.reduce_sum(ce * weight) / tf.maximum(tf.reduce_sum(weight), 1.0))
    return tf.add_n(losses) / len(losses)
