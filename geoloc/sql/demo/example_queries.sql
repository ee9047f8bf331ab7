-- A few query images of a split (the newest view of a location and heading) with their stored
-- embedding under a model: the demo report shows their nearest neighbours.
SELECT i.id, i.root, i.path, e.embedding::vector AS embedding
FROM images i
JOIN embeddings e ON e.image_id = i.id AND e.model_id = :model_id
WHERE i.split = :split AND i.version = :version AND i.is_query AND i.heading = 0
ORDER BY i.location_id
LIMIT :n;
