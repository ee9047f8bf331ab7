-- Run in each geoloc database, as its owner or a superuser, before the migrations.
-- Placeholders (psycopg.sql): app = the application role (owner of the tables), reader = the read-only role.
-- Nobody but the owner creates objects in public; the reader may read every table and view that
-- exists now, and every one the app role creates later (ALTER DEFAULT PRIVILEGES).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {reader};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};
ALTER DEFAULT PRIVILEGES FOR ROLE {app} IN SCHEMA public GRANT SELECT ON TABLES TO {reader};
