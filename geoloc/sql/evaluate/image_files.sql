-- The files of the images :ids (bigint[]): root and path, joined as geoloc.imagefile.image_file does
-- (geoloc evaluate --rerank reads the query's and its candidates' pixels).
SELECT i.id, i.root, i.path
FROM images AS i
WHERE i.id = ANY (CAST(:ids AS bigint[]));
