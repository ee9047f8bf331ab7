"""A streaming replica of the embedded cluster on another loopback port, for read-only searches.

`create_replica` copies the running primary with ``pg_basebackup`` as the replication role
(config.REPLICATION_USER, whose generated password is kept in the primary's secrets file like the
other roles' and reaches pg_basebackup through a 0600 passfile, never its command line), writes
``standby.signal`` and ``primary_conninfo`` (``-R``), moves it to its own port and starts it. The
standby replays the primary's WAL continuously and refuses every write; point searches at it with
``geoloc search --read-url`` or GEOLOC_READ_DATABASE_URL. Its folder also holds a copy of the
primary's secrets file (the roles and their passwords are the primary's, replicated).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..childenv import child_env
from ..errors import ClusterError
from .cluster import Cluster, _write_private

BASEBACKUP_TIMEOUT_S = 600
DEFAULT_CATCHUP_S = 60.0


@dataclass
class Replica:
    cluster: Cluster
    created: bool  # copied from the primary by this call (else it existed and was started)

    def url(self, dbname: str = config.DEFAULT_DB, role: str = config.DEFAULT_USER) -> str:
        return self.cluster.url(dbname, role)


def default_root() -> Path:
    return config.data_dir() / "replica"


def default_port() -> int:
    return config.pg_port() + 1


def create_replica(primary: Cluster | None = None, root: Path | None = None, port: int | None = None,
                   catchup_s: float = DEFAULT_CATCHUP_S) -> Replica:
    """Make (first time) and start a standby of PRIMARY (default: the embedded cluster) in ROOT on
    127.0.0.1:PORT, then wait until it has replayed the primary's current WAL position."""
    primary = primary or Cluster.default()
    root = Path(root or default_root())
    port = int(port or default_port())
    if not primary.running:
        raise ClusterError(f"the embedded cluster in {primary.root} is not running", hint="run 'geoloc db up'")
    if port == primary.port:
        raise ClusterError(f"port {port} is the primary's: the replica needs a port of its own",
                           hint="choose another with --port")
    replica = Cluster(root, port, bindir=primary.bindir)
    created = False
    if not replica.initialised:
        replica.check_port()
        _basebackup(primary, replica)
        created = True
    replica.start()
    wait_for_replay(primary, replica, catchup_s)
    return Replica(replica, created)


def _basebackup(primary: Cluster, replica: Cluster) -> None:
    password = primary.ensure_replication_role()
    root = replica.root
    root.mkdir(parents=True, exist_ok=True)
    uid = primary._server_uid()
    if uid is not None:
        os.chmod(root, 0o755)
        shutil.chown(root, user=uid)
    passfile = root / f".replication-pgpass.{os.getpid()}"
    _write_private(passfile, f"{config.EMBEDDED_HOST}:{primary.port}:*:{config.REPLICATION_USER}:{password}\n",
                   owner_uid=uid)
    cmd = [str(primary.bindir / "pg_basebackup"), "-D", str(replica.pgdata), "-h", config.EMBEDDED_HOST,
           "-p", str(primary.port), "-U", config.REPLICATION_USER, "-X", "stream", "-R", "-c", "fast", "-w"]
    user = primary._server_user()
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BASEBACKUP_TIMEOUT_S, cwd="/",
                              env=child_env(extra={"PGPASSFILE": str(passfile)}))
    finally:
        passfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        shutil.rmtree(replica.pgdata, ignore_errors=True)  # a half copy is no standby: the next try starts over
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ClusterError(f"pg_basebackup failed: {detail[-1] if detail else proc.returncode}")
    # after the primary's port and -R's conninfo (whose passfile is gone): the standby's own settings;
    # the file is the server user's, mode 0600, like the data directory
    conninfo = (f"host={config.EMBEDDED_HOST} port={primary.port} user={config.REPLICATION_USER} "
                f"password={password} application_name=geoloc_replica")
    with open(replica.pgdata / "postgresql.auto.conf", "a") as f:
        f.write(f"# written by geoloc db replica\nport = {replica.port}\nprimary_conninfo = '{conninfo}'\n")
    secrets = config.read_secrets(primary.root)
    _write_private(replica.secrets_file, json.dumps(secrets, indent=2) + "\n")
    replica.write_passfile()


def wait_for_replay(primary: Cluster, replica: Cluster, timeout_s: float = DEFAULT_CATCHUP_S) -> None:
    """Block until REPLICA has replayed everything PRIMARY had written when this was called."""
    import psycopg

    with psycopg.connect(primary.admin_url(), autocommit=True) as conn:
        target = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # includes async commits
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(replica.admin_url(), autocommit=True) as conn:
        if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise ClusterError(f"the cluster in {replica.root} is not a standby (no standby.signal)")
        while True:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]
            if done:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the replica on port {replica.port} did not catch up with the primary "
                                   f"within {timeout_s:g} s", hint=f"see {replica.logfile}")
            time.sleep(0.1)
