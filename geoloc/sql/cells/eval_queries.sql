-- The protocol's queries of a split (and version) with their embedding under a model, their true
-- position and their true cell of a partitioning's level (NULL: the finest level; NULL when their
-- location is in no cell of that level).
-- Queries are the images marked is_query: per location and heading the newest image.
SELECT i.id, ST_Y(l.geom) AS lat, ST_X(l.geom) AS lng,
       (SELECT lc.cell_id FROM location_cells AS lc
        WHERE lc.partition_id = CAST(:partition_id AS integer) AND lc.location_id = l.id
          AND (CAST(:level AS integer) IS NULL OR lc.level = CAST(:level AS integer))
        ORDER BY lc.level DESC LIMIT 1) AS true_cell,
       e.embedding::vector AS embedding
FROM images AS i
JOIN locations AS l ON l.id = i.location_id
JOIN embeddings AS e ON e.image_id = i.id AND e.model_id = CAST(:model_id AS integer)
WHERE i.is_query
  AND i.split = CAST(:split AS text)
  AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))
ORDER BY i.id;
