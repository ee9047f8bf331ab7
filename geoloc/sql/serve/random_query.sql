-- `geoloc serve`: one query image (the newest per location and heading) of a split, at random.
SELECT i.id
FROM images AS i
WHERE i.is_query AND i.split = :split
ORDER BY random()
LIMIT 1;
