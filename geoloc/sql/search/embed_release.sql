-- Give back a chunk claimed with embed_claim.sql, once its rows are committed (false: it was not held).
SELECT pg_advisory_unlock(CAST(:model_id AS integer), CAST(:chunk_no AS integer)) AS released;
