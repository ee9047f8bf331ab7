-- Seconds until the next pending job of a backend that no other worker holds (none: queue drained).
SELECT GREATEST(EXTRACT(EPOCH FROM next_attempt_at - now()), 0) AS wait_s
FROM capture_jobs
WHERE backend = :backend AND status = 'pending'
ORDER BY next_attempt_at
LIMIT 1
FOR UPDATE SKIP LOCKED;
