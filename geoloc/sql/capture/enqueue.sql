-- Queue one capture job per selected location for a backend. A location that already has a job for
-- this backend (done or not) or already has images is left alone: nothing is captured twice.
INSERT INTO capture_jobs (location_id, backend)
SELECT l.id, :backend
FROM locations AS l
WHERE l.id = ANY(:location_ids)
  AND NOT EXISTS (SELECT 1 FROM images AS i WHERE i.location_id = l.id)
ORDER BY l.id
ON CONFLICT (location_id, backend) DO NOTHING;
