-- A new cell partitioning (its cells follow with insert_cells.sql, level by level).
INSERT INTO cell_partitions (name, levels, img_min, img_max, min_res, max_res, split, images)
VALUES (:name, :levels, :img_min, CAST(:img_max AS integer[]), :min_res, :max_res, :split, :images)
RETURNING id;
