"""The package layout of README.md's "Layout" section, checked against every module's imports (ast),
and TensorFlow kept out of the commands that do not need it (real subprocesses)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "geoloc"
LEAVES = "leaves"
TRACKED_THIRD_PARTY = ("click", "tensorflow", "keras", "fastapi", "starlette", "uvicorn", "matplotlib", "folium",
                       "selenium", "requests", "alembic", "cv2")


def _layout_tables() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """(package -> the geoloc groups it may import, third-party -> the modules it may appear in),
    read from README.md's Layout section."""
    text = REPO.joinpath("README.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    allowed, third = {}, {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("package", "---"):
            may = {c.strip().strip("`") for c in cells[2].split(",")}
            allowed[cells[0].strip("`")] = may
        elif len(cells) == 2 and cells[0] not in ("third-party", "---"):
            where = [c.strip().strip("`") for c in cells[1].split(",")]
            for name in re.findall(r"`([\w.]+)`", cells[0]):
                third[name] = where
    return allowed, third


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _group(module: str) -> str:
    """'geoloc.db.engine' -> 'geoloc.db'; a single module right under geoloc/ is a leaf."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return f"geoloc.{parts[1]}"
    if len(parts) == 2 and parts[1] in ("demo", "__main__"):
        return module
    return LEAVES


def _imports(path: Path) -> list[str]:
    """Absolute names of everything PATH imports (top level or inside functions)."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module)
                continue
            base = package[:len(package) - (node.level - 1)]
            if node.module:
                names.append(".".join(base + [node.module]))
            else:
                names += [".".join(base + [a.name]) for a in node.names]
    return names


def _within(module: str, places: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in places)


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_tables_cover_every_package():
    allowed, third = _layout_tables()
    groups = {_group(_module_name(p)) for p in MODULES} - {"geoloc.__main__"}
    assert groups == set(allowed), "README's Layout table and geoloc/ disagree about the packages"
    assert set(third) == set(TRACKED_THIRD_PARTY)


def _problems(module: str, names: list[str]) -> list[str]:
    """What in NAMES (imported by MODULE) the Layout tables forbid, one line each."""
    allowed, third = _layout_tables()
    group, problems = _group(module), []
    for name in names:
        top = name.split(".")[0]
        if top == "geoloc":
            target = _group(name) if name != "geoloc" else LEAVES
            ok = (group == "geoloc.__main__" or target == group
                  or "anything" in allowed.get(group, ()) or target in allowed.get(group, ()))
            if not ok:
                problems.append(f"{module} imports {name} ({target} is not allowed for {group})")
        elif top in third and not _within(module, third[top]):
            problems.append(f"{module} imports {top} (only in {', '.join(third[top])})")
    return problems


def test_every_module_imports_only_what_the_layout_allows():
    problems = [line for path in MODULES for line in _problems(_module_name(path), _imports(path))]
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_violation():
    """The rules are not blind: forbidden imports are reported, allowed ones are not."""
    assert _problems("geoloc.db.engine", ["click", "geoloc.cli", "geoloc.model.registry", "geoloc.errors"]) == [
        "geoloc.db.engine imports click (only in geoloc.cli)",
        "geoloc.db.engine imports geoloc.cli (geoloc.cli is not allowed for geoloc.db)",
        "geoloc.db.engine imports geoloc.model.registry (geoloc.model is not allowed for geoloc.db)",
    ]
    assert _problems("geoloc.months", ["tensorflow", "geoloc.db"]) == [
        "geoloc.months imports tensorflow (only in geoloc.model, geoloc.retrieval.embed, geoloc.serve.embedder)",
        "geoloc.months imports geoloc.db (geoloc.db is not allowed for leaves)",
    ]
    assert _problems("geoloc.cli.models", ["click", "geoloc.model.registry"]) == []
    assert _problems("geoloc.retrieval.embed", ["tensorflow", "geoloc.model.data"]) == []


def _loaded_after(args: list[str], env: dict) -> tuple[set[str], subprocess.CompletedProcess]:
    code = ("import sys\nfrom geoloc.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=120)
    line = [x for x in res.stdout.splitlines() if x.startswith("LOADED ")]
    assert line, res.stdout + res.stderr
    return set(line[0].split()[1:]), res


@pytest.mark.parametrize("args", [["--help"], ["db", "--help"], ["ingest", "--help"]])
def test_help_does_not_load_tensorflow(args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    loaded, res = _loaded_after(args, env)
    assert "Usage:" in res.stdout
    assert not {"tensorflow", "keras"} & loaded, sorted(loaded)
    assert "click" in loaded  # the probe does see imports


def test_db_status_does_not_load_tensorflow(db_url):
    env = {**os.environ, "PYTHONPATH": str(REPO), "GEOLOC_DATABASE_URL": db_url}
    loaded, res = _loaded_after(["db", "status"], env)
    assert res.returncode == 0 and "Error" not in res.stderr, res.stdout + res.stderr
    assert not {"tensorflow", "keras"} & loaded, sorted(loaded)
    assert "sqlalchemy" in loaded
