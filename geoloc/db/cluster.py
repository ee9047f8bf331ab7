"""A private PostgreSQL cluster that geoloc creates and runs itself.

PostgreSQL refuses to run as root, so when geoloc is invoked as root the server runs as the
unprivileged ``postgres`` user (created by Debian's package) and owns the data directory. The
cluster listens on 127.0.0.1 only and lets nobody in without a password (SCRAM-SHA-256):

- ``geoloc_admin``, the bootstrap superuser, only creates roles, databases and extensions;
- ``geoloc`` (no superuser, no CREATEDB/CREATEROLE) owns the database and runs the migrations;
- ``geoloc_reader`` may only read (SELECT on every table and view, now and later).

Their generated passwords are in ``secrets.json`` and the libpq ``pgpass`` file beside the data
directory, both mode 0600 and owned by the user running geoloc. Every program started here gets its
environment from ``child_env``: no API key, database URL or password reaches the server.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .. import config
from ..childenv import child_env
from ..errors import ClusterError, DatabaseUnavailable
from . import sqlfiles

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "password_encryption": "'scram-sha-256'",
    "max_connections": "60",
    "shared_buffers": "'256MB'",
    # HNSW builds are much faster when the graph fits in maintenance_work_mem
    "maintenance_work_mem": "'1GB'",
    # pgvector < 0.8.2 can overflow in parallel HNSW builds: build them single-process
    "max_parallel_maintenance_workers": "0",
    "logging_collector": "off",
}
ROLES = (config.ADMIN_USER, config.DEFAULT_USER, config.READER_USER)


def password_rejected(error: BaseException | None) -> bool:
    """True when a server answered but refused our password (libpq reports it without a SQLSTATE)."""
    return error is not None and ("password authentication failed" in str(error)
                                  or getattr(error, "sqlstate", None) == "28P01")


def _write_private(path: Path, text: str, owner_uid: int | None = None) -> None:
    """Write PATH atomically with mode 0600 (never readable by others, not even for a moment)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if owner_uid is not None:
            os.fchown(fd, owner_uid, -1)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


@dataclass
class Cluster:
    root: Path
    port: int
    bindir: Path = field(default_factory=config.pg_bindir)
    extra_settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def default(cls) -> "Cluster":
        return cls(config.cluster_root(), config.pg_port())

    @property
    def pgdata(self) -> Path:
        return self.root / f"data{config.PG_MAJOR}"

    @property
    def logfile(self) -> Path:
        return self.root / "postgresql.log"

    @property
    def secrets_file(self) -> Path:
        return config.secrets_file(self.root)

    @property
    def passfile(self) -> Path:
        return config.passfile(self.root)

    def url(self, dbname: str = config.DEFAULT_DB, role: str = config.DEFAULT_USER) -> str:
        """SQLAlchemy URL of ROLE (default: the app role) on database DBNAME, password included."""
        return config.embedded_url(dbname, self.port, role=role, root=self.root)

    def admin_url(self, dbname: str = "postgres") -> str:
        return config.libpq_url(self.url(dbname, config.ADMIN_USER))

    # -- process helpers -------------------------------------------------------------------
    def _server_user(self) -> str | None:
        """The user the server runs as when we are root, else None (ourselves)."""
        if os.geteuid() != 0:
            return None
        user = os.environ.get("GEOLOC_PG_USER", "postgres")
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise ClusterError(
                f"running as root needs an unprivileged user '{user}' for the server, and it does not exist",
                hint="install postgresql-15 (it creates 'postgres') or set GEOLOC_PG_USER",
            ) from None
        return user

    def _server_uid(self) -> int | None:
        user = self._server_user()
        return pwd.getpwnam(user).pw_uid if user else None

    def _run(self, args: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        exe = self.bindir / args[0]
        if not exe.exists():
            raise ClusterError(
                f"{exe} not found", hint="run scripts/install-system.sh or set GEOLOC_PG_BIN"
            )
        cmd = [str(exe), *args[1:]]
        user = self._server_user()
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/", env=child_env())
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ClusterError(f"{args[0]} failed: {detail[-1] if detail else proc.returncode}")
        return proc

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the cluster folder: concurrent `db up`s run one after the other."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "geoloc.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- port ------------------------------------------------------------------------------
    def port_error(self, why: str) -> ClusterError:
        return ClusterError(f"port {self.port} on {config.EMBEDDED_HOST} is {why} "
                            f"(not geoloc's cluster in {self.root})",
                            hint="set GEOLOC_PG_PORT to a free port")

    def not_running(self) -> DatabaseUnavailable:
        """The error for a cluster that does not run: not created yet, or stopped."""
        if not self.initialised:
            return DatabaseUnavailable(f"the embedded PostgreSQL in {self.root} was not created yet",
                                       hint="run 'geoloc db up'")
        return DatabaseUnavailable(f"the embedded PostgreSQL in {self.pgdata} is not running",
                                   hint="start it with 'geoloc db up'")

    def _running_port(self) -> int | None:
        """The port our own running server listens on (from postmaster.pid), None when it is not running."""
        if not self.running:
            return None
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def check_port(self) -> None:
        """Fail unless 127.0.0.1:port is free or held by this data directory's own server."""
        running = self._running_port()
        if running == self.port:
            return
        if running is not None:
            raise ClusterError(f"geoloc's cluster in {self.root} runs on port {running}, not on GEOLOC_PG_PORT={self.port}",
                               hint="stop it with 'geoloc db down', then retry")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((config.EMBEDDED_HOST, self.port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise self.port_error("in use by another program") from None
                raise

    # -- secrets ---------------------------------------------------------------------------
    def _new_secrets(self) -> dict[str, str]:
        passwords = {role: secrets.token_urlsafe(32) for role in ROLES}
        _write_private(self.secrets_file, json.dumps(passwords, indent=2) + "\n")
        return passwords

    def write_passfile(self) -> Path:
        """The libpq password file for the app and read-only roles (any port on 127.0.0.1)."""
        passwords = config.read_secrets(self.root)
        lines = [f"{config.EMBEDDED_HOST}:*:*:{role}:{passwords[role]}"
                 for role in (config.DEFAULT_USER, config.READER_USER) if role in passwords]
        _write_private(self.passfile, "".join(line + "\n" for line in lines))
        return self.passfile

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def _check_secured(self) -> None:
        if self.initialised and not self.secrets_file.exists():
            raise ClusterError(
                f"the cluster in {self.pgdata} has no {self.secrets_file.name}: it was created by an older geoloc "
                "that trusted every local connection, or its secrets were removed",
                hint=f"stop it, move {self.root} aside and run 'geoloc db up' (then copy data over with pg_dump)",
            )

    def init(self) -> bool:
        """Create the cluster unless it exists. Returns True when it was created now."""
        if self.initialised:
            self._check_secured()
            return False
        self.check_port()
        self.root.mkdir(parents=True, exist_ok=True)
        uid = self._server_uid()
        if uid is not None:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, user=uid)
            self._check_reachable(self._server_user())
        passwords = self._new_secrets()
        # the bootstrap password goes through a 0600 file the server user can read, never argv
        pwfile = self.root / f".initdb-pw.{os.getpid()}"
        _write_private(pwfile, passwords[config.ADMIN_USER] + "\n", owner_uid=uid)
        try:
            self._run(["initdb", "-D", str(self.pgdata), "-U", config.ADMIN_USER, f"--pwfile={pwfile}",
                       "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {**SERVER_SETTINGS, "port": str(self.port), **self.extra_settings}
        with open(self.pgdata / "postgresql.auto.conf", "a") as f:
            f.write("# written by geoloc\n")
            for key, value in settings.items():
                f.write(f"{key} = {value}\n")
        return True

    def _check_reachable(self, user: str) -> None:
        probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(self.root)], env=child_env())
        if probe.returncode != 0:
            raise ClusterError(
                f"data directory {self.root} is not reachable by the server user '{user}'",
                hint="choose a GEOLOC_DATA_DIR outside private home directories (default /var/lib/geoloc)",
            )

    @property
    def running(self) -> bool:
        if not self.initialised:
            return False
        return self._run(["pg_ctl", "status", "-D", str(self.pgdata)], check=False).returncode == 0

    def start(self) -> bool:
        """Start the server and wait until it accepts our admin. True when it was started now."""
        if not self.initialised:
            raise ClusterError(f"no cluster in {self.pgdata}", hint="run 'geoloc db up'")
        self._check_secured()
        self.check_port()
        if self.running:
            self._wait_ready()
            return False
        proc = self._run(["pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata),
                          "-o", f"-p {self.port}", "-l", str(self.logfile)], check=False)
        if proc.returncode != 0:
            tail = self.log_tail()
            raise ClusterError(f"PostgreSQL did not start on port {self.port}: {tail or proc.stderr.strip()}")
        self._wait_ready()
        return True

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.admin_url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if password_rejected(exc):
                    raise self.port_error("answered by a server that rejects geoloc's password") from None
                if time.monotonic() > deadline:
                    raise ClusterError(f"PostgreSQL on port {self.port} does not accept connections: "
                                       f"{str(exc).strip().splitlines()[0]}") from None
                time.sleep(0.2)

    def stop(self) -> bool:
        if not self.running:
            return False
        self._run(["pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata)])
        return True

    def log_tail(self, lines: int = 1) -> str:
        try:
            text = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    # -- roles and databases (as the admin) ------------------------------------------------
    def _admin(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(self.admin_url(dbname), autocommit=True)

    def ensure_roles(self) -> None:
        """Create the app and read-only roles if missing and (re)set their attributes and passwords."""
        from psycopg import sql

        passwords = config.read_secrets(self.root)
        with self._admin() as conn:
            for role, attrs in ((config.DEFAULT_USER, "roles/app.sql"), (config.READER_USER, "roles/reader.sql")):
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
                # the server gets the SCRAM verifier, not the password (nothing to see in its logs)
                verifier = conn.pgconn.encrypt_password(passwords[role].encode(), role.encode(), b"scram-sha-256")
                conn.execute(sql.SQL(sqlfiles.read(attrs)).format(
                    role=sql.Identifier(role), verifier=sql.Literal(verifier.decode())))
        self.write_passfile()

    def ensure_replication_role(self) -> str:
        """The replication role (config.REPLICATION_USER) for standbys, with a generated password
        added to the secrets file on first use; returns the password (for pg_basebackup's passfile)."""
        from psycopg import sql

        passwords = config.read_secrets(self.root)
        role = config.REPLICATION_USER
        if role not in passwords:
            passwords[role] = secrets.token_urlsafe(32)
            _write_private(self.secrets_file, json.dumps(passwords, indent=2) + "\n")
        with self._admin() as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
            verifier = conn.pgconn.encrypt_password(passwords[role].encode(), role.encode(), b"scram-sha-256")
            conn.execute(sql.SQL(sqlfiles.read("roles/replicator.sql")).format(
                role=sql.Identifier(role), verifier=sql.Literal(verifier.decode())))
        return passwords[role]

    def create_database(self, name: str = config.DEFAULT_DB, template: str | None = None) -> bool:
        """Create a database owned by the app role unless it exists. True when created now."""
        from psycopg import sql

        with self._admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                return False
            stmt = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                 sql.Identifier(config.DEFAULT_USER))
            if template:
                stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
            conn.execute(stmt)
        return True

    def prepare_database(self, name: str = config.DEFAULT_DB) -> None:
        """Extensions and the read-only role's grants in database NAME, before the app role migrates it."""
        from psycopg import sql

        with self._admin(name) as conn:
            for ext in config.EXTENSIONS:
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
            conn.execute(sql.SQL(sqlfiles.read("roles/reader_grants.sql")).format(
                app=sql.Identifier(config.DEFAULT_USER), reader=sql.Identifier(config.READER_USER)))

    def provision(self, name: str = config.DEFAULT_DB, template: str | None = None) -> bool:
        """Roles, then database NAME owned by the app role with its extensions and the reader's grants
        (ready for the app role to migrate). True when the database was created now."""
        self.ensure_roles()
        created = self.create_database(name, template)
        self.prepare_database(name)
        return created
