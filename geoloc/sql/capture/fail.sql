-- A capture attempt failed (the attempt was counted when the job was claimed): keep the reason and
-- retry after an exponential backoff, or give up ('failed') once :max_attempts attempts were made.
-- Only the worker that owns the running job can do this (no row returned otherwise).
UPDATE capture_jobs
SET status = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END,
    last_error = :error,
    next_attempt_at = now() + make_interval(secs => :backoff_s * power(2, GREATEST(attempts - 1, 0))),
    locked_pid = NULL
WHERE id = :id AND status = 'running' AND locked_by = :worker
RETURNING status, attempts;
