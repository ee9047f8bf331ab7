-- How many embeddings the model has in all and among the images of a split / version, and how many
-- images that split / version has.
SELECT (SELECT count(*) FROM embeddings WHERE model_id = %(model_id)s) AS total,
       (SELECT count(*)
        FROM embeddings AS e
        JOIN images AS i ON i.id = e.image_id
        WHERE e.model_id = %(model_id)s
          AND (%(split)s::text IS NULL OR i.split = %(split)s::text)
          AND (%(version)s::text IS NULL OR i.version = %(version)s::text)) AS in_scope,
       (SELECT count(*)
        FROM images AS i
        WHERE (%(split)s::text IS NULL OR i.split = %(split)s::text)
          AND (%(version)s::text IS NULL OR i.version = %(version)s::text)) AS images;
