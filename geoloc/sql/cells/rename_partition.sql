UPDATE cell_partitions SET name = :name WHERE id = :partition_id;
