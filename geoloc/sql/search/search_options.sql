-- Transaction-local settings the knn statements (knn.sql, knn_cells.sql) rely on, in one round trip:
--   hnsw.iterative_scan = relaxed_order   pgvector 0.8: keep walking the graph until k rows have
--                                         passed the filters (rows may come back slightly out of
--                                         order; the statements sort the k rows again)
--   hnsw.ef_search, hnsw.max_scan_tuples  candidate list size (recall vs speed), and how far an
--                                         iterative scan may walk before it gives up
--   plan_cache_mode = force_custom_plan   plan with the actual values, so the partial index
--                                         predicate is proven and the unused branch pruned
--   no hash/merge joins, no materialise, no parallel workers: every join of knn.sql is an index
--   lookup of a few rows. Without these the planner joined a filtered HNSW scan to a materialised
--   (hash/merge) list of the region's images, 20x slower than following each graph row to its image
--   and location by primary key (benchmarks/README.md).
--   no bitmap scans: knn.sql counts a region's rows only up to small_region + 1, which a plain GiST
--   index scan stops after; a bitmap scan first collects every row of the region (57,000 for 1 km at
--   1M rows: 15 ms spent before the graph walk even starts).
--   no JIT: a statement this short never earns its compile time back; the cost of the large
--   branch's exact-sort alternative crossed jit_above_cost at 1M rows and the compile added 15-20 ms
--   to every 250 m search (benchmarks/README.md).
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('hnsw.ef_search', CAST(:ef_search AS text), true),
       set_config('hnsw.max_scan_tuples', CAST(:max_scan_tuples AS text), true),
       set_config('plan_cache_mode', 'force_custom_plan', true),
       set_config('enable_hashjoin', 'off', true),
       set_config('enable_mergejoin', 'off', true),
       set_config('enable_material', 'off', true),
       set_config('enable_bitmapscan', 'off', true),
       set_config('max_parallel_workers_per_gather', '0', true),
       set_config('jit', 'off', true);
