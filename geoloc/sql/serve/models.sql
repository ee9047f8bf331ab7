-- `geoloc serve`: the models a page can search with (ready, with embeddings), best validated first.
-- The first row is the default model: the highest validation Recall@1 of training, then the newest;
-- models without a validation figure (the thumbnail baseline) come last. cells: whether the model has
-- cell heads (its searches also return the most probable geo-cells).
SELECT m.id, m.name, m.backbone, m.dim, m.input_size,
       (m.metrics ->> 'val_recall@1')::float AS recall_at_1,
       (SELECT count(*) FROM embeddings AS e WHERE e.model_id = m.id) AS embeddings,
       EXISTS (SELECT 1 FROM model_cells AS h WHERE h.model_id = m.id) AS cells,
       m.created_at
FROM models AS m
WHERE m.status = 'ready'
  AND EXISTS (SELECT 1 FROM embeddings AS e WHERE e.model_id = m.id)
ORDER BY (m.metrics ->> 'val_recall@1')::float DESC NULLS LAST, m.created_at DESC, m.id DESC;
