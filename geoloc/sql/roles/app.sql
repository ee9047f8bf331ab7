-- The application role: logs in with its password, owns the geoloc database and everything the
-- migrations create, and nothing more (no superuser, cannot create databases or roles).
-- Placeholders (psycopg.sql): role = the role name, verifier = SCRAM-SHA-256 verifier of its password.
ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT
    PASSWORD {verifier};
