-- One cell partitioning by name.
SELECT id, name, levels, img_min, img_max, min_res, max_res, split, images, created_at
FROM cell_partitions
WHERE name = :name;
