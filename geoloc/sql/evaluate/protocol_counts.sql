-- The evaluation protocol's sizes for one split (and version): images, how many of them have an
-- embedding under the model, and how many are queries (per location and heading the newest image).
WITH pool AS (
    SELECT i.id, i.location_id, i.heading, i.time_index,
           EXISTS (SELECT 1 FROM embeddings AS e
                   WHERE e.model_id = CAST(:model_id AS integer) AND e.image_id = i.id) AS embedded
    FROM images AS i
    WHERE i.split = CAST(:split AS text)
      AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))
)
SELECT count(*) AS images,
       count(*) FILTER (WHERE embedded) AS embedded,
       count(DISTINCT (location_id, heading)) AS queries,
       count(DISTINCT location_id) AS locations
FROM pool;
