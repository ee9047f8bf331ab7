-- Give failed jobs of a backend a fresh set of attempts (geoloc ingest capture --retry-failed).
UPDATE capture_jobs
SET status = 'pending', attempts = 0, next_attempt_at = now()
WHERE backend = :backend AND status = 'failed';
