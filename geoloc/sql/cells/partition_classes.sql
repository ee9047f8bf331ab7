-- The classes of a partitioning: every cell of every level in class-index order.
SELECT id, level, class_index
FROM cells
WHERE partition_id = :partition_id
ORDER BY level, class_index;
