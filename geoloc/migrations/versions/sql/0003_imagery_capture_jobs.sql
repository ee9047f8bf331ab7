-- v_capture_jobs: the capture queue on the map: which locations are pending, done or failed, and why
-- (unique id column: id). last_error never contains an API key (workers redact it before storing).
CREATE OR REPLACE VIEW v_capture_jobs AS
SELECT j.id,
       j.location_id,
       j.backend,
       j.status,
       j.attempts,
       j.last_error,
       j.next_attempt_at,
       j.done_at,
       (SELECT count(*) FROM images AS i
         WHERE i.location_id = j.location_id AND i.source = 'capture:' || j.backend) AS images,
       l.geom
FROM capture_jobs AS j
JOIN locations AS l ON l.id = j.location_id;
