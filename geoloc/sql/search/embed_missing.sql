-- The images of one chunk (ids lo <= id < hi; optionally of one split / version) that have no
-- embedding under the model yet: what `geoloc embed` re-reads after claiming the chunk. A LEFT JOIN
-- on the primary key, so a rerun resumes where it stopped.
SELECT i.id, i.root, i.path
FROM images AS i
LEFT JOIN embeddings AS e ON e.image_id = i.id AND e.model_id = :model_id
WHERE e.image_id IS NULL
  AND i.id >= :lo AND i.id < :hi
  AND (CAST(:split AS text) IS NULL OR i.split = CAST(:split AS text))
  AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))
ORDER BY i.id;
