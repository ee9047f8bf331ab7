-- Give a running job back without counting its attempt: the worker stopped for a reason that is not
-- the location's (a wrong setting, a database error, the run being interrupted).
UPDATE capture_jobs
SET status = 'pending', attempts = GREATEST(attempts - 1, 0), locked_pid = NULL
WHERE id = :id AND status = 'running' AND locked_by = :worker;
