-- Release what try_lock.sql took.
SELECT pg_advisory_unlock(CAST(:lock_class AS integer), CAST(:model_id AS integer));
