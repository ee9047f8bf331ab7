-- Drop the selection's work tables (they would otherwise live as long as the session).
DROP TABLE IF EXISTS pg_temp.buffer_candidates, pg_temp.buffer_kept;
