-- The work `geoloc embed` still has, per chunk of consecutive image ids (chunk_no = id / chunk): how
-- many images of the split / version have no embedding under the model yet. Runs claim whole chunks.
SELECT i.id / %(chunk)s AS chunk_no, count(*) AS missing
FROM images AS i
LEFT JOIN embeddings AS e ON e.image_id = i.id AND e.model_id = %(model_id)s
WHERE e.image_id IS NULL
  AND (%(split)s::text IS NULL OR i.split = %(split)s::text)
  AND (%(version)s::text IS NULL OR i.version = %(version)s::text)
GROUP BY 1
ORDER BY 1;
