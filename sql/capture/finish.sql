-- The job's images are stored (same transaction): mark it done. locked_by stays as "captured by",
-- last_error keeps the reason of the last failed attempt, if any.
UPDATE capture_jobs
SET status = 'done', done_at = now()
WHERE id = :id;
