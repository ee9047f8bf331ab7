-- How many embeddings one model has (what its HNSW index holds).
SELECT count(*) AS rows FROM embeddings WHERE model_id = :model_id;
