-- Try to take the session advisory lock (model_id, lock) that serialises one model's index builds.
SELECT pg_try_advisory_lock(CAST(:model_id AS integer), CAST(:lock AS integer)) AS locked;
