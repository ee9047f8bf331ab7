-- Claim one chunk of a model's images for `geoloc embed` (geoloc.retrieval.claims): a session advisory
-- lock (model_id, chunk_no), taken at once or not at all; it lasts until released or the session ends.
SELECT pg_try_advisory_lock(CAST(:model_id AS integer), CAST(:chunk_no AS integer)) AS claimed;
