"""The import direction of the architecture: the pure core never imports a shell."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "suanli"

# package -> packages of ours it may import (besides itself and the leaf modules below)
ALLOWED: dict[str, set[str]] = {
    "catalog": set(),
    "domain": {"catalog"},
    "importers": {"catalog", "domain"},
    "policy": {"catalog", "domain"},
    "models": {"catalog", "domain"},
    "billing": {"catalog", "domain"},
    "perf": {"catalog", "domain", "models"},
    "scheduler": {"catalog", "domain", "models", "perf", "policy"},
    "sim": {"catalog", "domain", "models", "perf", "policy", "scheduler"},
    "engines": {"domain", "models"},
    "store": {"domain"},
    "services": {
        "billing",
        "catalog",
        "domain",
        "models",
        "policy",
        "qualify",
        "scheduler",
        "store",
    },
    "gateway": {"billing", "catalog", "domain", "models", "policy", "store", "services"},
    "qualify": {"catalog", "domain"},
    "agent": {"catalog", "domain", "client", "engines", "models", "qualify"},
    "client": set(),
    "api": {
        "billing",
        "catalog",
        "domain",
        "gateway",
        "models",
        "policy",
        "qualify",
        "store",
        "services",
    },
    "cli": {
        "catalog",
        "domain",
        "policy",
        "qualify",
        "store",
        "services",
        "api",
        "agent",
        "client",
        "importers",
        "models",
        "engines",
        "gateway",
        "billing",
        "perf",
        "scheduler",
        "sim",
    },
}
LEAVES = {"errors", "settings", "__init__"}  # dependency-free modules anyone may use
SHELL_LIBRARIES = {
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "httpx",
    "typer",
    "rich",
    "psycopg",
}
PURE = {"billing", "catalog", "domain", "importers", "models", "perf", "policy", "scheduler"}
# qualify is not pure (it times hardware) but must stay free of the web and database stack


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _package(root: Path, path: Path) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def violations(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        pkg = _package(root, path)
        if pkg in LEAVES:
            continue
        if pkg not in ALLOWED:
            problems.append(f"{pkg} is not in the architecture table")
            continue
        for name in sorted(_imports(path)):
            parts = name.split(".")
            if parts[0] == "suanli" and len(parts) > 1:
                target = parts[1]
                if target not in LEAVES and target != pkg and target not in ALLOWED[pkg]:
                    problems.append(f"{path.relative_to(root)} imports {name}")
            if pkg in PURE and parts[0] in SHELL_LIBRARIES:
                problems.append(f"{path.relative_to(root)} (pure core) imports {name}")
    return problems


def test_import_direction() -> None:
    assert violations(SRC) == []


def test_the_check_catches_a_core_importing_a_shell(tmp_path: Path) -> None:
    (tmp_path / "domain").mkdir()
    (tmp_path / "domain" / "bad.py").write_text("import fastapi\nfrom suanli.api.app import x\n")
    (tmp_path / "newpkg.py").write_text("")
    assert sorted(violations(tmp_path)) == [
        "domain/bad.py (pure core) imports fastapi",
        "domain/bad.py imports suanli.api.app",
        "newpkg is not in the architecture table",
    ]
