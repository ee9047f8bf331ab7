"""Where geoloc keeps things and which database it talks to, read from the environment.

Every setting has an environment variable so scripts, CI and the demo can point the same code at
other places without flags on every command.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from .errors import ConfigError

DEFAULT_PORT = 54329  # not 5432: Debian's own cluster may already be there
DEFAULT_DB = "geoloc"
DEFAULT_USER = "geoloc"  # the application role: owns the database and everything migrations create
ADMIN_USER = "geoloc_admin"  # bootstrap superuser of the embedded cluster: roles, databases, extensions
READER_USER = "geoloc_reader"  # read-only role for QGIS, analysts and read-only services
# extensions every geoloc database needs (btree_gist: the model id beside the point in one GiST index)
EXTENSIONS = ("postgis", "vector", "btree_gist")
REPLICATION_USER = "geoloc_replicator"  # streams WAL to standbys (geoloc db replica); nothing else
EMBEDDED_HOST = "127.0.0.1"
PG_MAJOR = os.environ.get("GEOLOC_PG_MAJOR", "15")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INDEX_MEMORY = "4GB"  # the most an HNSW build may hold in memory (enough for about 2.5M x halfvec(256))
MEMORY_UNITS_KB = {"kB": 1, "MB": 1024, "GB": 1024 ** 2, "TB": 1024 ** 3}  # PostgreSQL's memory units


def _default_data_dir() -> Path:
    if os.geteuid() == 0:
        # root's home is private; the unprivileged server user must be able to reach its data dir
        return Path("/var/lib/geoloc")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "geoloc"


def data_dir() -> Path:
    """Root of geoloc's own files: the embedded cluster, model weights, reports."""
    return Path(os.environ.get("GEOLOC_DATA_DIR") or _default_data_dir()).expanduser()


def shared_data_dir() -> Path:
    """The real Stockholm data set (never copied into the repo)."""
    default = REPO_ROOT.parent / "shared" / "data" / "stockholm"
    return Path(os.environ.get("GEOLOC_SHARED_DATA") or default).expanduser()


def images_root() -> Path:
    """The folder `geoloc ingest images` imports when it is given none: GEOLOC_IMAGES_ROOT, else the
    shared Stockholm images. Only that default: every image row stores the absolute folder it was
    imported from or captured into (images.root) and its path relative to that folder, so the files
    of stored rows never depend on this setting."""
    return Path(os.environ.get("GEOLOC_IMAGES_ROOT") or shared_data_dir() / "images").expanduser()


def pg_bindir() -> Path:
    return Path(os.environ.get("GEOLOC_PG_BIN") or f"/usr/lib/postgresql/{PG_MAJOR}/bin")


def pg_port() -> int:
    raw = os.environ.get("GEOLOC_PG_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"GEOLOC_PG_PORT: '{raw}' is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"GEOLOC_PG_PORT: {port} is outside 1..65535")
    return port


def memory_kb(value: str, setting: str) -> int:
    """A PostgreSQL memory size such as '512MB' or '4GB' in kB; SETTING names where it came from."""
    m = re.fullmatch(r"\s*(\d+)\s*(kB|MB|GB|TB)\s*", value)
    if not m or int(m[1]) == 0:
        raise ConfigError(f"{setting}: '{value}' is not a memory size such as 512MB or 4GB "
                          f"(units {', '.join(MEMORY_UNITS_KB)})")
    return int(m[1]) * MEMORY_UNITS_KB[m[2]]


def index_memory_kb() -> int:
    """GEOLOC_INDEX_MEMORY: the most memory (maintenance_work_mem) one HNSW build may take on the server."""
    return memory_kb(os.environ.get("GEOLOC_INDEX_MEMORY") or DEFAULT_INDEX_MEMORY, "GEOLOC_INDEX_MEMORY")


def cluster_root() -> Path:
    """Folder of the embedded cluster: its data directory, log, secrets and lock file."""
    return data_dir() / "pg"


def secrets_file(root: Path | None = None) -> Path:
    """Generated password of each role of the embedded cluster (JSON, mode 0600, never printed)."""
    return (root or cluster_root()) / "secrets.json"


def passfile(root: Path | None = None) -> Path:
    """libpq password file (mode 0600) for the app and read-only roles, for psql, QGIS and other clients."""
    return (root or cluster_root()) / "pgpass"


def read_secrets(root: Path | None = None) -> dict[str, str]:
    """Role -> password of the embedded cluster; empty when it was not created yet."""
    path = secrets_file(root)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable secrets file ({type(exc).__name__})",
                          hint="it is written by 'geoloc db up'; restore it or recreate the cluster") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{path}: not a role -> password object")
    return data


@dataclass(frozen=True)
class DatabaseTarget:
    url: str
    external: bool  # True when GEOLOC_DATABASE_URL points elsewhere: db up/down leave it alone


def embedded_url(dbname: str = DEFAULT_DB, port: int | None = None, role: str = DEFAULT_USER,
                 root: Path | None = None) -> str:
    """SQLAlchemy URL of ROLE on the embedded cluster, with its password from the secrets file.

    The URL lives in memory only; print it only through ``redact`` or ``split_password``."""
    password = read_secrets(root).get(role)
    creds = f"{role}:{quote(password, safe='')}" if password else role
    return f"postgresql+psycopg://{creds}@{EMBEDDED_HOST}:{port or pg_port()}/{dbname}"


def database_target() -> DatabaseTarget:
    url = os.environ.get("GEOLOC_DATABASE_URL")
    if url:
        return DatabaseTarget(normalise_url(url), external=True)
    return DatabaseTarget(embedded_url(), external=False)


def read_only_url() -> str | None:
    """SQLAlchemy URL of a read-only role on the configured database, or None when none is known.

    GEOLOC_READONLY_DATABASE_URL when set; else, for the embedded cluster, its ``geoloc_reader``;
    an external GEOLOC_DATABASE_URL without GEOLOC_READONLY_DATABASE_URL has none."""
    url = os.environ.get("GEOLOC_READONLY_DATABASE_URL")
    if url:
        return normalise_url(url, "GEOLOC_READONLY_DATABASE_URL")
    if os.environ.get("GEOLOC_DATABASE_URL") or READER_USER not in read_secrets():
        return None
    return embedded_url(role=READER_USER)


def read_database_url() -> str | None:
    """GEOLOC_READ_DATABASE_URL: a server (e.g. a streaming replica made by `geoloc db replica`)
    that `geoloc search` reads from instead of the configured database; None when unset."""
    url = os.environ.get("GEOLOC_READ_DATABASE_URL")
    return normalise_url(url, "GEOLOC_READ_DATABASE_URL") if url else None


def normalise_url(url: str, setting: str = "GEOLOC_DATABASE_URL") -> str:
    """Accept libpq-style URLs and make SQLAlchemy use psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ConfigError(
        f"{setting}: '{redact(url)}' is not a PostgreSQL URL (expected postgresql://USER@HOST:PORT/DB)"
    )


def redact(url: str) -> str:
    """Hide a password in a URL before it reaches a log or an error."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def libpq_url(url: str) -> str:
    """The URL as psql, QGIS and libpq expect it (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def split_password(url: str) -> tuple[str, str | None]:
    """(URL without its password, the password or None), so a password can travel apart from argv."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    creds, host = parts.netloc.rsplit("@", 1)
    bare = parts._replace(netloc=f"{creds.split(':', 1)[0]}@{host}")
    return urlunsplit(bare), unquote(parts.password)
