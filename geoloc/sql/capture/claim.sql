-- Take the next job of a backend and count the attempt, in one short transaction of its own that
-- the worker commits before it starts capturing: an attempt is counted even when the worker dies
-- during it. The job is then 'running', owned by the worker's database session (locked_pid,
-- locked_at) for as long as that session lives. A job is due when it is pending and its retry time
-- has come, or when it is running but its owner's session is gone (the worker was killed): that
-- attempt is over, and when it was the last one allowed the job is marked failed instead.
-- FOR UPDATE SKIP LOCKED: two workers claiming at once never get the same job.
WITH next AS (
    SELECT j.id
    FROM capture_jobs AS j
    WHERE j.backend = :backend
      AND ((j.status = 'pending' AND j.next_attempt_at <= now())
           OR (j.status = 'running' AND NOT EXISTS (
               SELECT 1 FROM pg_stat_activity AS a
               WHERE a.pid = j.locked_pid AND (a.backend_start IS NULL OR a.backend_start <= j.locked_at))))
    ORDER BY j.next_attempt_at, j.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE capture_jobs AS j
SET status = CASE WHEN j.status = 'running' AND j.attempts >= :max_attempts THEN 'failed' ELSE 'running' END,
    attempts = CASE WHEN j.status = 'running' AND j.attempts >= :max_attempts THEN j.attempts
                    ELSE j.attempts + 1 END,
    last_error = CASE WHEN j.status = 'running'  -- the last attempt's worker stopped without a word
                      THEN format('attempt %s stopped without finishing (worker %s was killed or lost '
                                  'its database connection)', j.attempts, j.locked_by)
                      ELSE j.last_error END,
    locked_by = :worker,
    locked_pid = CASE WHEN j.status = 'running' AND j.attempts >= :max_attempts THEN NULL ELSE pg_backend_pid() END,
    locked_at = now()
FROM next
WHERE j.id = next.id
RETURNING j.id, j.location_id, j.backend, j.attempts, j.status, j.last_error;
