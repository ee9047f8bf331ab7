-- Runs once when the container's cluster is created; `geoloc db migrate` creates the tables.
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS vector;
