-- How many embeddings one model has (what its HNSW index holds).
SELECT count(*) FROM embeddings WHERE model_id = %(model_id)s;
