-- Every location (any split) with its position and how many images of SPLIT it has: the input of
-- an adaptive partitioning (geoloc.cells.partition), which also assigns every location its cells.
SELECT l.id AS location_id,
       ST_Y(l.geom) AS lat,
       ST_X(l.geom) AS lng,
       count(i.id) FILTER (WHERE i.split = :split) AS images
FROM locations AS l
LEFT JOIN images AS i ON i.location_id = l.id
GROUP BY l.id
ORDER BY l.id;
