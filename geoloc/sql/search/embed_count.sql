-- How many embeddings the model has in all and among the images of a split / version, and how many
-- images that split / version has.
SELECT (SELECT count(*) FROM embeddings WHERE model_id = :model_id) AS total,
       (SELECT count(*)
        FROM embeddings AS e
        JOIN images AS i ON i.id = e.image_id
        WHERE e.model_id = :model_id
          AND (CAST(:split AS text) IS NULL OR i.split = CAST(:split AS text))
          AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))) AS in_scope,
       (SELECT count(*)
        FROM images AS i
        WHERE (CAST(:split AS text) IS NULL OR i.split = CAST(:split AS text))
          AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))) AS images;
