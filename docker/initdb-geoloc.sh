#!/bin/sh
# Runs once, as the admin (POSTGRES_USER), when the container's cluster is created: the same roles as
# geoloc's embedded cluster. `geoloc db migrate` then runs as geoloc and creates the tables.
#   geoloc        owns the database and everything the migrations create; no superuser
#   geoloc_reader LOGIN, read-only: SELECT on every table and view, now and later
# Passwords come from the environment (psql's \getenv), never from a command line.
set -eu
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv app_password GEOLOC_PASSWORD
\getenv reader_password GEOLOC_READER_PASSWORD
CREATE ROLE geoloc LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE ROLE geoloc_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reader_password';
ALTER ROLE geoloc_reader SET default_transaction_read_only = on;
ALTER DATABASE :"DBNAME" OWNER TO geoloc;
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS vector;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO geoloc_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE geoloc IN SCHEMA public GRANT SELECT ON TABLES TO geoloc_reader;
SQL
