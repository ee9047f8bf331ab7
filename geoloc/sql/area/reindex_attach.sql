-- Re-indexing, step 2 of 2 (see area/reindex_detach.sql): each moved point takes its new cell's idx.
UPDATE grid_points AS g SET idx = p.new_idx
FROM area_points AS p
WHERE g.id = p.id AND p.new_idx IS DISTINCT FROM p.idx AND p.new_idx IS NOT NULL;
