"""Retrieval: embeddings in pgvector, one-query k-NN search joined with geometry, evaluation, pictures."""
