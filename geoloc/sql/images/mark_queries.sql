-- The original evaluation protocol: per (location, heading) the newest image (smallest time_index)
-- is the query, every other image belongs to the database. Recomputed for the given locations.
WITH newest AS (
    SELECT DISTINCT ON (location_id, heading) id
    FROM images
    WHERE location_id = ANY(:location_ids)
    ORDER BY location_id, heading, time_index, id
)
UPDATE images AS i
SET is_query = (i.id IN (SELECT id FROM newest))
WHERE i.location_id = ANY(:location_ids)
  AND i.is_query IS DISTINCT FROM (i.id IN (SELECT id FROM newest));
