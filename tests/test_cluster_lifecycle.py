"""`geoloc db up`, `db status` and `db down` of the embedded PostgreSQL, as a user runs them: each a
process of its own, on a fresh GEOLOC_DATA_DIR and a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from geoloc.db.cluster import Cluster
from geoloc.db.migrate import head_revision

REPO = Path(__file__).resolve().parent.parent
HEAD = head_revision()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _geoloc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geoloc", *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=REPO)


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


@pytest.fixture
def fresh_data_dir():
    """(GEOLOC_DATA_DIR, port, environment of the commands); whatever runs there is stopped at the end."""
    # under /tmp with mode 0755: as root the server runs as 'postgres' and must reach it
    data_dir, port = Path(tempfile.mkdtemp(prefix="geoloc-life-")), _free_port()
    os.chmod(data_dir, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.update(GEOLOC_DATA_DIR=str(data_dir), GEOLOC_PG_PORT=str(port), PYTHONPATH=str(REPO))
    yield data_dir, port, env
    Cluster(data_dir / "pg", port).stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.slow
def test_status_follows_the_server_through_up_a_second_up_and_down(fresh_data_dir):
    data_dir, port, env = fresh_data_dir
    pgdata = data_dir / "pg" / f"data{os.environ.get('GEOLOC_PG_MAJOR', '15')}"

    res = _geoloc("db", "status", env=env)  # nothing made yet
    assert (res.returncode, res.stdout) == (1, ""), res.stderr
    assert res.stderr == (f"Error: the embedded PostgreSQL in {data_dir / 'pg'} was not created yet\n"
                          "Hint: run 'geoloc db up'\n")

    up = _geoloc("db", "up", env=env)
    assert up.returncode == 0, up.stderr
    assert up.stdout.splitlines()[:2] == [f"created cluster in {pgdata}", "started PostgreSQL"]
    res = _geoloc("db", "status", env=env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"database:   postgresql://geoloc@127.0.0.1:{port}/geoloc (embedded)"
    assert lines[1].startswith("server:     PostgreSQL 1") and f"migration:  {HEAD} (head {HEAD})" in lines
    assert ["areas", "0"] in [line.split() for line in lines]
    pid = _postmaster_pid(pgdata)

    # a second up while it runs: no new cluster or database, the same server, status unchanged
    again = _geoloc("db", "up", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[:2] == ["PostgreSQL already running", f"migrated to {HEAD}"]
    assert "created" not in again.stdout
    assert _postmaster_pid(pgdata) == pid
    assert _geoloc("db", "status", env=env).stdout == res.stdout

    down = _geoloc("db", "down", env=env)
    assert (down.returncode, down.stdout) == (0, "stopped PostgreSQL\n"), down.stderr
    assert not (pgdata / "postmaster.pid").exists()
    res = _geoloc("db", "status", env=env)
    assert (res.returncode, res.stdout) == (1, ""), res.stderr
    assert res.stderr == (f"Error: the embedded PostgreSQL in {pgdata} is not running\n"
                          "Hint: start it with 'geoloc db up'\n")


def test_a_command_on_a_cluster_never_created_says_so_and_one_elsewhere_keeps_the_server_error(
        cli, monkeypatch, tmp_path):
    monkeypatch.delenv("GEOLOC_DATABASE_URL", raising=False)
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GEOLOC_PG_PORT", str(_free_port()))
    for args in (("db", "status"), ("ingest", "grid", "--area", "x")):
        res = cli(*args)
        assert res.exit_code == 1
        assert res.stderr == (f"Error: the embedded PostgreSQL in {tmp_path / 'pg'} was not created yet\n"
                              "Hint: run 'geoloc db up'\n"), args
    # an external server that does not answer is not geoloc's to start
    monkeypatch.setenv("GEOLOC_DATABASE_URL", f"postgresql://geoloc@127.0.0.1:{_free_port()}/geoloc")
    res = cli("db", "status")
    assert res.exit_code == 1 and res.stderr.startswith("Error: cannot connect to postgresql://geoloc@127.0.0.1:")
