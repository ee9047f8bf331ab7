-- Session settings of an index build: single-process (parallel HNSW builds can overflow in
-- pgvector < 0.8.2) and enough memory for the graph (a build that spills to disk is many times slower).
SELECT set_config('max_parallel_maintenance_workers', '0', false),
       set_config('maintenance_work_mem', :memory, false);
