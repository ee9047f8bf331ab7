-- The work `geoloc embed` still has, per chunk of consecutive image ids (chunk_no = id / chunk): how
-- many images of the split / version have no embedding under the model yet. Runs claim whole chunks.
SELECT i.id / :chunk AS chunk_no, count(*) AS missing
FROM images AS i
LEFT JOIN embeddings AS e ON e.image_id = i.id AND e.model_id = :model_id
WHERE e.image_id IS NULL
  AND (CAST(:split AS text) IS NULL OR i.split = CAST(:split AS text))
  AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))
GROUP BY 1
ORDER BY 1;
