-- `geoloc serve`: the images of one location (newest first, then by heading).
SELECT i.id AS image_id, i.heading, i.time_index, to_char(i.capture_month, 'YYYY-MM') AS capture_month,
       i.split, i.version
FROM images AS i
WHERE i.location_id = :location_id
ORDER BY i.time_index, i.heading, i.id;
