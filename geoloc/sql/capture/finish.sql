-- The job's images are being stored (same transaction): mark it done, if this worker still owns it
-- (no row returned: it does not, and the caller rolls back). The row lock taken here is held until
-- the images are committed. locked_by stays as "captured by"; last_error keeps the reason of the
-- last failed attempt, if any.
UPDATE capture_jobs
SET status = 'done', done_at = now(), locked_pid = NULL
WHERE id = :id AND status = 'running' AND locked_by = :worker
RETURNING id;
