-- Seconds until the next job of a backend is due (see capture/claim.sql); no row when none is left
-- (jobs that live workers are capturing right now are theirs).
SELECT GREATEST(EXTRACT(EPOCH FROM due.at - now()), 0) AS wait_s
FROM (
    SELECT min(j.next_attempt_at) AS at
    FROM capture_jobs AS j
    WHERE j.backend = :backend
      AND (j.status = 'pending'
           OR (j.status = 'running' AND NOT EXISTS (
               SELECT 1 FROM pg_stat_activity AS a
               WHERE a.pid = j.locked_pid AND (a.backend_start IS NULL OR a.backend_start <= j.locked_at))))
) AS due
WHERE due.at IS NOT NULL;
