-- Images of one split for training or validation, in a stable order (independent of import order).
-- :split            'train' | 'val' | 'test'
-- :versions         text[] of versions to use ('v1', 'v2', ...), NULL for all
-- :include_queries  false leaves out the newest image of each location+heading (the query images)
-- The file of a row is root/path (root: the folder it was imported from).
SELECT id,
       location_id,
       heading,
       time_index,
       version,
       is_query,
       root,
       path
FROM images
WHERE split = :split
  AND (CAST(:versions AS text[]) IS NULL OR version = ANY(CAST(:versions AS text[])))
  AND (:include_queries OR NOT is_query)
ORDER BY location_id, heading, version, time_index, path;
