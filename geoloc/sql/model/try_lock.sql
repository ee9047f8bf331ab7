-- Claim "this session trains model :model_id" (true) unless another session holds it (false).
-- Session-level: it survives commits and is released by pg_advisory_unlock or when the session ends.
SELECT pg_try_advisory_lock(CAST(:lock_class AS integer), CAST(:model_id AS integer));
