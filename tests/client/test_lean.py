"""keyturn.client stays lean (httpx and orjson, nothing of keyturn's server or store), and the
sessions domain knows no storage and no web: checked on the imports themselves with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "src" / "keyturn"


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_the_client_imports_only_httpx_orjson_and_itself() -> None:
    found = {m for p in (PKG / "client").glob("*.py") for m in _imports(p)}
    ours = {m for m in found if m.startswith("keyturn")}
    assert ours <= {"keyturn.client._auth", "keyturn.client._tokens"}, ours
    third_party = {m.split(".")[0] for m in found} - {"keyturn", "__future__"}
    stdlib = {
        "asyncio",
        "base64",
        "collections",
        "dataclasses",
        "math",
        "re",
        "threading",
        "time",
        "typing",
        "urllib",
    }
    assert third_party - stdlib == {"httpx", "orjson"}


def test_the_sessions_domain_has_no_io() -> None:
    for name in ("model.py", "rotation.py", "errors.py"):
        bad = {
            m
            for m in _imports(PKG / "sessions" / name)
            if m.startswith(("keyturn.store", "keyturn.server", "keyturn.cli", "sqlalchemy"))
            or m.split(".")[0] in ("httpx", "fastapi", "starlette")
        }
        assert bad == set(), (name, bad)
