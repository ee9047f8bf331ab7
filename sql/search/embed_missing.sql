-- The images of one chunk (ids lo <= id < hi; optionally of one split / version) that have no
-- embedding under the model yet: what `geoloc embed` re-reads after claiming the chunk. A LEFT JOIN
-- on the primary key, so a rerun resumes where it stopped.
SELECT i.id, i.root, i.path
FROM images AS i
LEFT JOIN embeddings AS e ON e.image_id = i.id AND e.model_id = %(model_id)s
WHERE e.image_id IS NULL
  AND i.id >= %(lo)s AND i.id < %(hi)s
  AND (%(split)s::text IS NULL OR i.split = %(split)s::text)
  AND (%(version)s::text IS NULL OR i.version = %(version)s::text)
ORDER BY i.id;
