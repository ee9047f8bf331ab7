-- One evaluation run (its figures in metrics); the predictions follow with insert_predictions.sql.
INSERT INTO eval_runs (model_id, method, split, version, metrics)
VALUES (:model_id, :method, :split, :version, CAST(:metrics AS jsonb))
RETURNING id;
