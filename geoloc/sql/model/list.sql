-- The registry, newest first, with the best epoch's validation Recall@1 pulled out of metrics.
SELECT id, name, backbone, dim, input_size, status, train_split, train_seconds,
       (metrics ->> 'val_recall@1')::float AS recall_at_1,
       jsonb_array_length(history) AS epochs,
       weights_path, created_at, updated_at
FROM models
ORDER BY created_at DESC, id DESC;
