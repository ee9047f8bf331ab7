"""A private PostgreSQL cluster that geoloc creates and runs itself.

PostgreSQL refuses to run as root, so when geoloc is invoked as root the server runs as the
unprivileged ``postgres`` user (created by Debian's package) and owns the data directory. The
cluster listens on 127.0.0.1 only and trusts local connections: it is a single-user workspace.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import config
from ..errors import ClusterError

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "60",
    "shared_buffers": "'256MB'",
    # HNSW builds are much faster when the graph fits in maintenance_work_mem
    "maintenance_work_mem": "'1GB'",
    # pgvector < 0.8.2 can overflow in parallel HNSW builds: build them single-process
    "max_parallel_maintenance_workers": "0",
    "logging_collector": "off",
}


@dataclass
class Cluster:
    root: Path
    port: int
    bindir: Path = field(default_factory=config.pg_bindir)
    extra_settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def default(cls) -> "Cluster":
        return cls(config.data_dir() / "pg", config.pg_port())

    @property
    def pgdata(self) -> Path:
        return self.root / f"data{config.PG_MAJOR}"

    @property
    def logfile(self) -> Path:
        return self.root / "postgresql.log"

    def url(self, dbname: str = config.DEFAULT_DB) -> str:
        return config.embedded_url(dbname, self.port)

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
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ClusterError(f"{args[0]} failed: {detail[-1] if detail else proc.returncode}")
        return proc

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> bool:
        """Create the cluster unless it exists. Returns True when it was created now."""
        if self.initialised:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        user = self._server_user()
        if user:
            uid = pwd.getpwnam(user).pw_uid
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, user=uid)
            self._check_reachable(user)
        self._run(["initdb", "-D", str(self.pgdata), "-U", config.DEFAULT_USER, "--auth=trust",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
        settings = {**SERVER_SETTINGS, "port": str(self.port), **self.extra_settings}
        with open(self.pgdata / "postgresql.auto.conf", "a") as f:
            f.write("# written by geoloc\n")
            for key, value in settings.items():
                f.write(f"{key} = {value}\n")
        return True

    def _check_reachable(self, user: str) -> None:
        probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(self.root)])
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
        """Start the server and wait until it accepts connections. True when it was started now."""
        if not self.initialised:
            raise ClusterError(f"no cluster in {self.pgdata}", hint="run 'geoloc db up'")
        if self.running:
            return False
        proc = self._run(["pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata),
                          "-l", str(self.logfile)], check=False)
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
                psycopg.connect(config.libpq_url(self.url("postgres")), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"PostgreSQL on port {self.port} does not accept connections: {exc}") from exc
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

    def create_database(self, name: str = config.DEFAULT_DB, template: str | None = None) -> bool:
        """Create a database unless it exists. True when created now."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(config.libpq_url(self.url("postgres")), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                return False
            stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
            conn.execute(stmt)
        return True
