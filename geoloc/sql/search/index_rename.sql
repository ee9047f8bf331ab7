-- Rename one of a model's HNSW indexes ({name} to {new_name}; both filled in).
ALTER INDEX IF EXISTS {name} RENAME TO {new_name};
