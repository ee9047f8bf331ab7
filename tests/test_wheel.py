"""The package builds into a wheel that carries its SQL and migrations, and an installed copy (no
checkout beside it) reads its SQL files and finds its Alembic revisions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # builds and installs a wheel (about 20 s here)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline (no index, no build isolation) from a copy of the sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "geoloc", src / "geoloc", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (built,) = out.glob("geoloc-*.whl")
    return built


def test_the_wheel_carries_the_sql_and_the_migrations(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("geoloc/sql/search/knn.sql", "geoloc/sql/views/collection_split_coverage.sql",
                   "geoloc/migrations/env.py", "geoloc/migrations/script.py.mako",
                   "geoloc/migrations/versions/0001_initial_schema.py",
                   "geoloc/migrations/versions/sql/0002_collection_split_coverage.sql"):
        assert needed in names, needed


def test_an_installed_copy_reads_its_own_sql_and_revisions(wheel, tmp_path):
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                          "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    probe = ("import geoloc, geoloc.db.sqlfiles as f, geoloc.db.migrate as m\n"
             "from alembic.script import ScriptDirectory\n"
             "print(geoloc.__file__)\n"
             "print('LIMIT :k' in f.read('search/knn.sql'))\n"
             "print(ScriptDirectory.from_config(m.alembic_config('postgresql://unused/x')).get_current_head())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    where, has_knn, head = res.stdout.split()
    assert Path(where).is_relative_to(site)
    assert has_knn == "True"
    assert head == sorted(p.name for p in (REPO / "geoloc/migrations/versions").glob("[0-9]*.py"))[-1].split("_")[0]
