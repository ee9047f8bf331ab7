"""Geo-cells: adaptive H3 partitionings, cell heads on the embedding, and the hybrid search."""
