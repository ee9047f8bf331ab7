-- Release the build lock taken by build_lock_try.sql.
SELECT pg_advisory_unlock(CAST(:model_id AS integer), CAST(:lock AS integer)) AS released;
