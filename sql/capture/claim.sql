-- Take the next due job of a backend. The row stays locked (FOR UPDATE) for the whole capture:
-- other workers skip it (SKIP LOCKED), and if this worker dies its transaction rolls back, the lock
-- goes away and the job is simply pending again - no lease timeouts needed.
WITH next AS (
    SELECT id
    FROM capture_jobs
    WHERE backend = :backend AND status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE capture_jobs AS j
SET status = 'running', attempts = j.attempts + 1, locked_by = :worker, locked_at = now()
FROM next
WHERE j.id = next.id
RETURNING j.id, j.location_id, j.backend, j.attempts;
