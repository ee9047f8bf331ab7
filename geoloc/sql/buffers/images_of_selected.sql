-- Locations of an earlier selection (buffers :buffers) that already have images or capture jobs:
-- replacing them would delete those rows too, so the command refuses.
SELECT l.buffer_m, count(DISTINCT l.id) AS locations
FROM locations AS l
WHERE l.source = 'selection' AND l.buffer_m = ANY(CAST(:buffers AS double precision[]))
  AND (EXISTS (SELECT 1 FROM images AS i WHERE i.location_id = l.id)
       OR EXISTS (SELECT 1 FROM capture_jobs AS j WHERE j.location_id = l.id))
GROUP BY l.buffer_m
ORDER BY l.buffer_m DESC;
