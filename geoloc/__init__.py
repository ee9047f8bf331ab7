"""geoloc: tell where a street-level photo was taken, with PostgreSQL, PostGIS and pgvector."""

__version__ = "0.1.0"
