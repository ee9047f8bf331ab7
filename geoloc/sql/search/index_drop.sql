-- Drop one of a model's HNSW indexes without blocking searches or writes ({name} is filled in).
DROP INDEX CONCURRENTLY IF EXISTS {name};
