"""The domain imports no transport or database library; every __all__ is complete."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import bai.manager

BANNED = ("grpc", "sqlalchemy", "alembic", "aiosqlite", "psycopg", "google", "bai.pb",
          "bai.manager.api", "bai.manager.adapters")
DOMAIN = Path(bai.manager.__file__).parent / "domain"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_domain_imports_no_transport_or_database() -> None:
    files = sorted(DOMAIN.rglob("*.py"))
    assert files
    for path in files:
        bad = {n for n in _imports(path) for b in BANNED if n == b or n.startswith(b + ".")}
        assert not bad, f"{path.relative_to(DOMAIN.parent)} imports {sorted(bad)}"


def test_every_module_all_names_exist() -> None:
    for info in pkgutil.walk_packages(bai.manager.__path__, "bai.manager."):
        if ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{info.name}.__all__ lists missing {name}"
