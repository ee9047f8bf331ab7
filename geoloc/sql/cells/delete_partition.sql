-- Cells and location_cells go with it (ON DELETE CASCADE); model heads would block it (RESTRICT).
DELETE FROM cell_partitions WHERE id = :partition_id;
