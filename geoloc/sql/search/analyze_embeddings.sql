-- Fresh planner statistics for the embeddings table (its model ids and location points) after a run
-- added or removed rows, so that a region-limited search estimates the region's share right away
-- instead of waiting for autovacuum.
ANALYZE embeddings;
