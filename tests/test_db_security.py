"""Nobody gets into the embedded PostgreSQL without a password, the app role is no superuser, the
read-only role only reads, secrets stay in 0600 files (never in a command line or the server's
environment), and `geoloc db up` refuses a port that is not its own and survives running in parallel."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from geoloc import config
from geoloc.db.cluster import Cluster
from geoloc.db.migrate import head_revision

REPO = Path(__file__).resolve().parent.parent
ROLES = ("geoloc_admin", "geoloc", "geoloc_reader")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_dir() -> Path:
    # under /tmp with mode 0755: as root the server runs as 'postgres' and must reach it
    path = Path(tempfile.mkdtemp(prefix="geoloc-sec-"))
    os.chmod(path, 0o755)
    return path


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _connect(port: int, user: str, dbname: str, password: str | None = None):
    # passfile=/dev/null: no ~/.pgpass may help; only the password given here (if any) is sent
    return psycopg.connect(host="127.0.0.1", port=port, user=user, dbname=dbname, password=password,
                           passfile="/dev/null", connect_timeout=5, autocommit=True)


# -- authentication ----------------------------------------------------------------------------

def test_pg_hba_trusts_nobody(pg_cluster):
    rules = [line.split() for line in (pg_cluster.pgdata / "pg_hba.conf").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert rules
    assert all(rule[-1] == "scram-sha-256" for rule in rules), rules
    assert {rule[1] for rule in rules} >= {"all", "replication"}


@pytest.mark.parametrize("role", ROLES)
def test_connection_without_or_with_wrong_password_is_refused(pg_cluster, db_url, role):
    dbname = db_url.rsplit("/", 1)[1]
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        _connect(pg_cluster.port, role, dbname)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(pg_cluster.port, role, dbname, password="geoloc")
    right = config.read_secrets(pg_cluster.root)[role]
    _connect(pg_cluster.port, role, dbname, password=right).close()


# -- the app role ------------------------------------------------------------------------------

def test_app_role_is_no_superuser_and_cannot_run_programs(db_url):
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
        row = conn.execute("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
                           "FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == ("geoloc", False, False, False, False, False)
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                             "WHERE datname = current_database()").fetchone()[0]
        assert owner == "geoloc"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'true'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_read_file('/etc/hostname')")


def test_migrations_ran_as_the_app_role(engine):
    # every table and view of geoloc's schema belongs to the app role, which is no superuser
    with engine.connect() as conn:
        owners = set(conn.execute(sa.text(
            "SELECT c.relkind, r.rolname, r.rolsuper FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v') "
            "AND c.relname NOT IN ('spatial_ref_sys', 'geometry_columns', 'geography_columns')")).all())
    assert owners == {("r", "geoloc", False), ("v", "geoloc", False)}


# -- the read-only role ------------------------------------------------------------------------

def _relations(conn) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'public' "
        "ORDER BY table_name").fetchall()


def test_reader_selects_every_table_and_view(db_url):
    reader = config.read_only_url()
    assert reader and "geoloc_reader" in reader
    with psycopg.connect(_libpq(db_url), autocommit=True) as app:
        relations = _relations(app)
    kinds = {kind for _, kind in relations}
    assert {"BASE TABLE", "VIEW"} <= kinds
    assert {"images", "locations", "embeddings", "v_images"} <= {name for name, _ in relations}
    with psycopg.connect(_libpq(reader), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "geoloc_reader"
        for name, _ in relations:
            conn.execute(psycopg.sql.SQL("SELECT * FROM {} LIMIT 1").format(psycopg.sql.Identifier(name)))


WRITES = [
    "INSERT INTO {t} (name) VALUES ('x')",
    "UPDATE {t} SET name = name",
    "DELETE FROM {t}",
    "CREATE TABLE reader_made (id int)",
]


def _assert_writes_refused(conn, table: str) -> None:
    for stmt in WRITES:
        text = stmt.format(t=table)
        # the read-only default first; then, with it switched off, the missing privileges
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(text)
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(text)
        conn.execute("RESET default_transaction_read_only")


def test_reader_cannot_write_even_in_tables_created_later(db_url):
    reader = _libpq(config.read_only_url())
    with psycopg.connect(_libpq(db_url), autocommit=True) as app:
        app.execute("INSERT INTO areas (name, geom, area_m2) VALUES "
                    "('a', ST_Multi(ST_MakeEnvelope(18, 59, 18.1, 59.1, 4326)), 1)")
        app.execute("CREATE TABLE later (id int PRIMARY KEY, name text)")
        app.execute("INSERT INTO later VALUES (1, 'one')")
        app.execute("CREATE VIEW v_later AS SELECT id, name FROM later")
    with psycopg.connect(reader, autocommit=True) as conn:
        assert conn.execute("SELECT name FROM later").fetchall() == [("one",)]
        assert conn.execute("SELECT name FROM v_later").fetchall() == [("one",)]
        assert conn.execute("SELECT name FROM areas").fetchall() == [("a",)]
        _assert_writes_refused(conn, "areas")
        _assert_writes_refused(conn, "later")
    with psycopg.connect(_libpq(db_url), autocommit=True) as app:
        assert app.execute("SELECT name FROM later").fetchall() == [("one",)]
        assert app.execute("SELECT count(*) FROM areas").fetchone()[0] == 1
        assert app.execute("SELECT to_regclass('reader_made')").fetchone()[0] is None


# -- secrets -----------------------------------------------------------------------------------

def test_secret_files_are_private(pg_cluster):
    for path in (pg_cluster.secrets_file, pg_cluster.passfile):
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, path
        assert st.st_uid == os.geteuid(), path
    assert set(json.loads(pg_cluster.secrets_file.read_text())) == set(ROLES)
    passfile = pg_cluster.passfile.read_text()
    assert "geoloc_reader" in passfile and "geoloc_admin" not in passfile


# -- a fresh cluster made by `geoloc db up`, three times at once --------------------------------

def _env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GEOLOC_DATABASE_URL", "GEOLOC_READONLY_DATABASE_URL")}
    env.update(GEOLOC_DATA_DIR=str(data_dir), GEOLOC_PG_PORT=str(port), PYTHONPATH=str(REPO), **extra)
    return env


def _geoloc(*args: str, env: dict[str, str], **kw):
    return subprocess.run([sys.executable, "-m", "geoloc", *args], env=env, capture_output=True, text=True,
                          timeout=180, **kw)


@pytest.fixture(scope="module")
def fresh_up():
    """Three concurrent `geoloc db up` on a fresh data dir, with a Street View key in their environment."""
    data_dir, port = _fresh_dir(), _free_port()
    key = "KEY-" + secrets.token_hex(12)
    env = _env(data_dir, port, GEOLOC_GOOGLE_API_KEY=key)
    procs = [subprocess.Popen([sys.executable, "-m", "geoloc", "db", "up"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    cluster = Cluster(data_dir / "pg", port)
    yield cluster, env, key, results
    cluster.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.slow
def test_three_concurrent_db_up_leave_one_migrated_database(fresh_up):
    cluster, env, _, results = fresh_up
    for rc, out, err in results:
        assert rc == 0, err
    outputs = "".join(out for _, out, _ in results)
    assert outputs.count("created cluster") == 1
    assert outputs.count("created database geoloc") == 1
    assert outputs.count("migrated to " + head_revision()) == 3
    with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
        names = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate "
                             "AND datname <> 'postgres'").fetchall()
    assert names == [("geoloc",)]
    res = _geoloc("db", "status", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["revision"] == head_revision()
    passwords = config.read_secrets(cluster.root).values()
    assert not any(p in res.stdout + res.stderr + outputs for p in passwords)


def _cmdlines() -> dict[int, bytes]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                pass
    return found


def test_server_environment_and_command_lines_hold_no_secret(fresh_up):
    cluster, env, key, _ = fresh_up
    postmaster = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
    environ = Path(f"/proc/{postmaster}/environ").read_bytes()
    assert b"PATH=" in environ
    assert key.encode() not in environ and b"GEOLOC_" not in environ
    passwords = [p.encode() for p in config.read_secrets(cluster.root).values()]
    assert len(passwords) == 3
    # psql started by `geoloc db psql`, caught while it runs
    psql = subprocess.Popen([sys.executable, "-m", "geoloc", "db", "psql", "-c", "SELECT pg_sleep(3)"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        # the same pid: geoloc execs psql once it has built psql's command line and environment
        while not Path(f"/proc/{psql.pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"psql"):
            assert psql.poll() is None and time.monotonic() < deadline, psql.communicate()
            time.sleep(0.05)
        psql_env = Path(f"/proc/{psql.pid}/environ").read_bytes()
        cmdlines = _cmdlines()
    finally:
        out, err = psql.communicate(timeout=60)
    assert psql.returncode == 0, err
    assert b"PGPASSFILE=" in psql_env and key.encode() not in psql_env
    assert str(cluster.port).encode() in cmdlines[psql.pid]
    for pid, cmdline in cmdlines.items():
        assert not any(p in cmdline for p in passwords), pid


# -- ports that are not ours -------------------------------------------------------------------

def test_taken_port_is_a_one_line_error(cli, monkeypatch):
    data_dir = _fresh_dir()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        monkeypatch.delenv("GEOLOC_DATABASE_URL", raising=False)
        monkeypatch.setenv("GEOLOC_DATA_DIR", str(data_dir))
        monkeypatch.setenv("GEOLOC_PG_PORT", str(port))
        res = cli("db", "up")
    assert res.exit_code == 1
    assert res.stderr == (f"Error: port {port} on 127.0.0.1 is in use by another program "
                          f"(not geoloc's cluster in {data_dir}/pg)\n"
                          "Hint: set GEOLOC_PG_PORT to a free port\n")
    assert not (data_dir / "pg" / f"data{config.PG_MAJOR}").exists()
    shutil.rmtree(data_dir, ignore_errors=True)


def test_someone_elses_server_on_our_port_is_never_used(fresh_up, pg_cluster):
    # our cluster is down; another cluster (the test session's) listens on the port we are told to use
    cluster, env, _, _ = fresh_up
    env = {**env, "GEOLOC_PG_PORT": str(pg_cluster.port)}
    res = _geoloc("db", "status", env=env)
    assert res.returncode == 1
    assert res.stderr == (f"Error: port {pg_cluster.port} on 127.0.0.1 is answered by a server that rejects "
                          f"geoloc's password (not geoloc's cluster in {cluster.root})\n"
                          "Hint: set GEOLOC_PG_PORT to a free port\n")
    cluster.stop()
    res = _geoloc("db", "up", env=env)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"Error: port {pg_cluster.port} on 127.0.0.1 is in use by another program "
        f"(not geoloc's cluster in {cluster.root})",
        "Hint: set GEOLOC_PG_PORT to a free port"]


def test_data_dir_of_an_older_trusting_geoloc_is_refused(cli, monkeypatch):
    # an initialised cluster without secrets.json: made when every local connection was trusted
    data_dir = _fresh_dir()
    pgdata = data_dir / "pg" / f"data{config.PG_MAJOR}"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text(config.PG_MAJOR + "\n")
    monkeypatch.delenv("GEOLOC_DATABASE_URL", raising=False)
    monkeypatch.setenv("GEOLOC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("GEOLOC_PG_PORT", str(_free_port()))
    res = cli("db", "up")
    assert res.exit_code == 1
    assert res.stderr.startswith(f"Error: the cluster in {pgdata} has no secrets.json: it was created by an "
                                 "older geoloc that trusted every local connection")
    assert f"Hint: stop it, move {data_dir / 'pg'} aside and run 'geoloc db up'" in res.stderr
    assert sorted(p.name for p in pgdata.iterdir()) == ["PG_VERSION"]
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.slow
def test_db_down_stops_the_embedded_server_and_db_up_brings_it_back_with_the_data(tmp_path):
    """The embedded path end to end, as a user runs it: up, store a row, down (the port is closed and
    status fails), up again (the row is still there), down twice (the second says so)."""
    data_dir, port = _fresh_dir(), _free_port()
    env = _env(data_dir, port)
    cluster = Cluster(data_dir / "pg", port)
    try:
        first = _geoloc("db", "up", env=env)
        assert first.returncode == 0, first.stderr
        assert "created cluster" in first.stdout and "migrated to " + head_revision() in first.stdout
        with psycopg.connect(cluster.admin_url("geoloc"), autocommit=True) as conn:
            conn.execute("INSERT INTO areas (name, geom, area_m2) VALUES ('kept', "
                         "ST_Multi(ST_MakeEnvelope(18.0, 59.3, 18.1, 59.4, 4326)), 1.0)")
        res = _geoloc("db", "down", env=env)
        assert (res.returncode, res.stdout) == (0, "stopped PostgreSQL\n"), res.stderr
        with socket.socket() as s:  # nothing listens on the port any more
            assert s.connect_ex(("127.0.0.1", port)) != 0
        res = _geoloc("db", "status", env=env)
        assert res.returncode == 1 and res.stderr.startswith("Error: "), res.stdout + res.stderr
        again = _geoloc("db", "up", env=env)
        assert again.returncode == 0, again.stderr
        assert "created cluster" not in again.stdout and "started PostgreSQL" in again.stdout
        with psycopg.connect(cluster.admin_url("geoloc")) as conn:
            assert conn.execute("SELECT name FROM areas").fetchall() == [("kept",)]
        assert _geoloc("db", "down", env=env).stdout == "stopped PostgreSQL\n"
        assert _geoloc("db", "down", env=env).stdout == "PostgreSQL was not running\n"
    finally:
        cluster.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
