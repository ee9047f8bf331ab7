-- A capture attempt failed: keep the reason and retry after an exponential backoff, or give up
-- ('failed') once :max_attempts attempts were made.
UPDATE capture_jobs
SET status = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END,
    last_error = :error,
    next_attempt_at = now() + make_interval(secs => :backoff_s * power(2, GREATEST(attempts - 1, 0))),
    locked_by = NULL,
    locked_at = NULL
WHERE id = :id
RETURNING status, attempts;
