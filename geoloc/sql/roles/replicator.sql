-- The replication role: may stream WAL to a standby (pg_basebackup, walreceiver) and log in, nothing
-- else; pg_hba.conf admits it to replication connections from 127.0.0.1 by SCRAM-SHA-256 only.
-- Placeholders (psycopg.sql): role = the role name, verifier = SCRAM-SHA-256 verifier of its password.
ALTER ROLE {role} LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT
    PASSWORD {verifier};
