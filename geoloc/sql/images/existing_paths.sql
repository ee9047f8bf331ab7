-- Images already in the database, by root and relative path (an import skips them without reading
-- the files again, also when the same files are reached through another root).
SELECT root, path FROM images;
