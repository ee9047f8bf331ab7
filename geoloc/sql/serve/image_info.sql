-- `geoloc serve`: one image with where it was taken (the truth shown beside a query's prediction).
SELECT i.id AS image_id, i.location_id, i.heading, to_char(i.capture_month, 'YYYY-MM') AS capture_month,
       i.split, i.version, i.is_query, ST_Y(l.geom) AS lat, ST_X(l.geom) AS lng
FROM images AS i
JOIN locations AS l ON l.id = i.location_id
WHERE i.id = :image_id;
