-- The read-only role (QGIS, analysts, read-only services). Its transactions are read-only by
-- default; what really keeps it from writing are its privileges (roles/reader_grants.sql).
-- Placeholders (psycopg.sql): role = the role name, verifier = SCRAM-SHA-256 verifier of its password.
ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT
    PASSWORD {verifier};
ALTER ROLE {role} SET default_transaction_read_only = on;
