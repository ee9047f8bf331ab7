"""`geoloc db ...`: the embedded database and migrations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..db import admin as dbadmin

COMMANDS = ["db"]


@click.group()
def db() -> None:
    """Start, stop, inspect and migrate the database.

    Example: geoloc db up && geoloc db status
    """


@db.command()
def up() -> None:
    """Create (first time) and start the embedded PostgreSQL, then migrate.

    Does nothing to an external server given by GEOLOC_DATABASE_URL.

    Example: geoloc db up
    """
    for line in dbadmin.up():
        click.echo(line)


@db.command()
def down() -> None:
    """Stop the embedded PostgreSQL.

    Example: geoloc db down
    """
    click.echo(dbadmin.down())


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Server, PostgreSQL/PostGIS/pgvector versions, migration head and row counts.

    Example: geoloc db status --json
    """
    info = dbadmin.status()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"database:   {info['url']} ({'external' if info['external'] else 'embedded'})")
    click.echo(f"server:     PostgreSQL {info['postgresql']}")
    click.echo(f"extensions: PostGIS {info['postgis']}, pgvector {info['pgvector']}")
    click.echo(f"migration:  {info['revision']} (head {info['head']})")
    for warning in info.get("warnings", []):
        click.echo(f"Warning: {warning}")
    click.echo("rows:")
    for table, count in info["rows"].items():
        click.echo(f"  {table:<18} {count:>10,}")


@db.command()
@click.option("--read-only", is_flag=True, help="The read-only role (geoloc_reader) instead of the app role.")
@click.option("--show-password", is_flag=True,
              help="Put the password in the URL (for clients such as QGIS that take no passfile).")
def url(read_only: bool, show_password: bool) -> None:
    """Print the connection URL for psql, QGIS or any PostgreSQL client.

    Without --show-password the URL holds no password: the embedded cluster's names its
    0600 libpq password file (passfile=...), which psql and other libpq clients read.

    Example: psql "$(geoloc db url --read-only)"
    """
    click.echo(dbadmin.url(read_only=read_only, show_password=show_password))


@db.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
def migrate(revision: str) -> None:
    """Create the extensions if missing and apply the migrations to the configured database.

    Example: GEOLOC_DATABASE_URL=postgresql://me@dbhost/geoloc geoloc db migrate
    """
    click.echo(f"migrated to {dbadmin.migrate(revision)}")


@db.command(context_settings={"ignore_unknown_options": True})
@click.option("--read-only", is_flag=True, help="Connect as the read-only role (geoloc_reader).")
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def psql(read_only: bool, psql_args: tuple[str, ...]) -> None:
    """Open psql on the database as the app role (extra arguments are passed to psql).

    The password reaches psql through its environment (PGPASSFILE or PGPASSWORD), never its
    command line.

    Example: geoloc db psql -c 'SELECT count(*) FROM images'
    """
    cmd, env = dbadmin.psql(list(psql_args), read_only=read_only)
    os.execvpe(cmd[0], cmd, env)


@db.command()
@click.option("--port", type=int, help="Loopback port of the replica [GEOLOC_PG_PORT + 1].")
@click.option("--dir", "root", type=click.Path(path_type=Path, file_okay=False),
              help="Folder of the replica [GEOLOC_DATA_DIR/replica].")
def replica(port: int | None, root: Path | None) -> None:
    """Create (first time) and start a streaming replica of the embedded PostgreSQL for reads.

    It is copied with pg_basebackup as a replication role whose generated password is kept in the
    secrets file, replays the primary continuously and refuses writes. Send searches to it with
    --read-url or GEOLOC_READ_DATABASE_URL.

    Example: geoloc db replica --port 5434
    """
    from ..db.replica import create_replica

    rep = create_replica(root=root, port=port)
    click.echo(f"{'created' if rep.created else 'started'} replica in {rep.cluster.root} on port {rep.cluster.port}, "
               "caught up with the primary")
    click.echo(f"read URL: {dbadmin.replica_url(rep)}")
