-- Like try_lock.sql, but released at the end of this transaction: false while a training run holds it.
SELECT pg_try_advisory_xact_lock(CAST(:lock_class AS integer), CAST(:model_id AS integer));
