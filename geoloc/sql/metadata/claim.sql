-- Claim the next unchecked grid points of an area for this worker: at most :batch of them, in id
-- order after :after_id (:spacing NULL = every grid of the area), leaving out :skip (points this run
-- already gave up on). A claim belongs to the database session that made it (pid, claimed_at) and
-- stands while that session lives, so a killed worker's points are taken over at once. A point held
-- by a live session is never taken; when two workers race for the same point, the row lock of
-- ON CONFLICT lets one win. Returns the points claimed (ids) and how many were candidates: a worker
-- that claimed none of several candidates lost them to another one and asks again (the next
-- statement no longer sees them), only none at all means the pass is over. The caller re-reads the
-- claimed points in a new statement (metadata/claimed_points.sql), which drops the ones another
-- worker answered while this one was claiming.
WITH candidates AS (
    SELECT g.id
    FROM grid_points AS g
    WHERE g.area_id = :area_id
      AND (CAST(:spacing AS double precision) IS NULL OR g.spacing_m = :spacing)
      AND g.id > :after_id
      AND NOT (g.id = ANY(CAST(:skip AS bigint[])))
      AND NOT EXISTS (SELECT 1 FROM metadata_answers AS m WHERE m.grid_point_id = g.id)
      AND NOT EXISTS (
          SELECT 1 FROM metadata_claims AS c JOIN pg_stat_activity AS a ON a.pid = c.pid
          WHERE c.grid_point_id = g.id AND (a.backend_start IS NULL OR a.backend_start <= c.claimed_at))
    ORDER BY g.id
    LIMIT :batch
),
claimed AS (
    INSERT INTO metadata_claims AS c (grid_point_id, worker, pid, claimed_at)
    SELECT id, :worker, pg_backend_pid(), now()
    FROM candidates
    ON CONFLICT (grid_point_id) DO UPDATE
    SET worker = EXCLUDED.worker, pid = EXCLUDED.pid, claimed_at = EXCLUDED.claimed_at
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_stat_activity AS a
        WHERE a.pid = c.pid AND (a.backend_start IS NULL OR a.backend_start <= c.claimed_at))
    RETURNING c.grid_point_id
)
SELECT (SELECT count(*) FROM candidates) AS candidates,
       ARRAY(SELECT grid_point_id FROM claimed ORDER BY grid_point_id) AS ids;
