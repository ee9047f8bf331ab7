-- Back to the server's settings after an index build (index_build_settings.sql).
RESET max_parallel_maintenance_workers;
RESET maintenance_work_mem;
