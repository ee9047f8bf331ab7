-- `geoloc serve`: the stored evaluation runs, newest first, with their figures.
SELECT r.id, m.name AS model, r.method, r.split, r.version, r.metrics, r.created_at,
       (SELECT count(*) FROM eval_predictions AS p WHERE p.run_id = r.id) AS predictions
FROM eval_runs AS r
LEFT JOIN models AS m ON m.id = r.model_id
ORDER BY r.created_at DESC, r.id DESC;
