"""The database: the embedded cluster, connections, schema and migrations."""
