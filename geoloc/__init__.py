"""geoloc: tell where a street-level photo was taken, with PostgreSQL, PostGIS and pgvector."""

import os

__version__ = "0.1.0"

# TensorFlow's CPU tensors come from its pooling (BFC) allocator instead of one malloc/free each. With
# malloc, every training step maps and unmaps its large activations and faults each page in again; on a
# 2-core VM where page faults are dear that held `geoloc train` at 17.5 images/s against 48 with the
# pool (benchmarks/README.md, "Memory allocator"). TensorFlow reads the variable at its first
# allocation, so it takes effect for every geoloc process; a value the user set wins. (Where TensorFlow
# runs its oneDNN kernels, by default on CPUs with AVX-512 VNNI or newer, it pools in any case.)
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
