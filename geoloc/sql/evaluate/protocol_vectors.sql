-- The evaluation protocol's images with their embeddings under one model, for the exact search in numpy
-- (geoloc evaluate --post): every image of the split (and scraping version), is_query marking the
-- queries exactly as knn_all.sql chooses them (per location and heading the newest image, smallest
-- time_index, then smallest id), the others being the database. Ordered by image id, so numpy breaks
-- ties in distance by image id as knn_all.sql does. x, y: the location in SWEREF99 TM (EPSG:3006), where
-- the Euclidean distance is the metres knn_all.sql measures with ST_Distance. The images of the
-- :distractors splits (text[], may be empty) are database rows too, as in knn_all.sql.
WITH pool AS (
    SELECT i.id, i.split, i.location_id, i.heading, i.time_index, e.embedding::vector AS embedding
    FROM images AS i
    JOIN embeddings AS e ON e.image_id = i.id AND e.model_id = CAST(:model_id AS integer)
    WHERE (i.split = CAST(:split AS text) OR i.split = ANY (CAST(:distractors AS text[])))
      AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))
),
queries AS (
    SELECT DISTINCT ON (location_id, heading) id
    FROM pool
    WHERE split = CAST(:split AS text)
    ORDER BY location_id, heading, time_index, id
)
SELECT p.id,
       p.location_id,
       p.id IN (SELECT id FROM queries) AS is_query,
       ST_Y(l.geom) AS lat,
       ST_X(l.geom) AS lng,
       ST_X(ST_Transform(l.geom, 3006)) AS x,
       ST_Y(ST_Transform(l.geom, 3006)) AS y,
       p.embedding
FROM pool AS p
JOIN locations AS l ON l.id = p.location_id
ORDER BY p.id;
