-- One cell partitioning by id.
SELECT id, name, levels, img_min, img_max, min_res, max_res, split, images, created_at
FROM cell_partitions
WHERE id = :partition_id;
