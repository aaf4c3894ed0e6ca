"""The parts of /work/shared/architecture.json (copied as docs/architecture.json) hold in the code.

Every import of every module under src/keyturn (module level, inside functions and under
TYPE_CHECKING alike) is read with ``ast``; none may run along a ``never`` pair, nothing outside
the command line may import it, and no keyturn module is loaded by name through importlib.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PKG = SRC / "keyturn"
ARCHITECTURE = ROOT / "docs" / "architecture.json"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def imported_modules(path: Path, tree: ast.AST) -> set[str]:
    """Every keyturn module ``path`` imports; ``from pkg import name`` counts ``pkg.name`` when
    that is a module of its own."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            for a in node.names:
                out.add(f"{mod}.{a.name}")
    return {m for m in out if m in ALL_MODULES}


ALL_MODULES = {module_name(p) for p in source_files()}


def part_of(module: str, parts: dict[str, list[str]]) -> str | None:
    """The part whose ``is`` paths hold ``module``; ``x.py`` also names the package ``x/``."""
    for name, paths in parts.items():
        for p in paths:
            prefix = p.removeprefix("src/").removesuffix("/").removesuffix(".py").replace("/", ".")
            if module == prefix or module.startswith(prefix + "."):
                return name
    return None


def load_architecture() -> dict[str, object]:
    data: dict[str, object] = json.loads(ARCHITECTURE.read_text())
    return data


def test_the_architecture_file_is_the_shared_one_with_the_cli_package() -> None:
    shared = Path("/work/shared/architecture.json")
    if not shared.exists():
        pytest.skip("no shared copy on this machine")
    ours, theirs = load_architecture(), json.loads(shared.read_text())
    assert ours["never"] == theirs["never"]
    assert ours["arrows"] == theirs["arrows"]
    assert set(ours["parts"]) == set(theirs["parts"])  # type: ignore[arg-type]


def test_no_import_runs_along_a_never() -> None:
    arch = load_architecture()
    parts = {n: p["is"] for n, p in arch["parts"].items()}  # type: ignore[attr-defined]
    never = {(a, b) for a, b, _why in arch["never"]}  # type: ignore[attr-defined,misc]
    broken: list[str] = []
    for path in source_files():
        src = part_of(module_name(path), parts)
        if src is None:
            continue
        for mod in imported_modules(path, ast.parse(path.read_text())):
            dst = part_of(mod, parts)
            if (src, dst) in never:
                broken.append(f"{src} -> {dst}: {path.relative_to(ROOT)} imports {mod}")
    assert broken == []


def test_only_the_command_line_imports_the_command_line() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {mod}"
        for path in source_files()
        if not module_name(path).startswith("keyturn.cli")
        for mod in imported_modules(path, ast.parse(path.read_text()))
        if mod == "keyturn.cli" or mod.startswith("keyturn.cli.")
    ]
    assert offenders == []


def _dynamic_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name not in ("import_module", "__import__"):
            continue
        arg = node.args[0] if node.args else None
        if not isinstance(arg, ast.Constant) or not isinstance(arg.value, str):
            found.append(f"{name}(<computed>)")  # a computed name could be one of ours
        elif arg.value.startswith(("keyturn", ".")):
            found.append(f"{name}({arg.value!r})")
    return found


def test_no_keyturn_module_is_imported_by_name() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in source_files()
        if (found := _dynamic_imports(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_checks_see_what_they_look_for() -> None:
    """The readers above find an import_module call and a relative import (so an empty result
    means none, not a reader that sees nothing)."""
    tree = ast.parse("import importlib\nimportlib.import_module('keyturn.cli')\n")
    assert _dynamic_imports(tree) == ["import_module('keyturn.cli')"]
    server_app = PKG / "server" / "app.py"
    assert "keyturn.service" in imported_modules(server_app, ast.parse(server_app.read_text()))
    parts = {"Face": ["src/keyturn/cli.py"], "Server": ["src/keyturn/server/"]}
    assert part_of("keyturn.cli.serve", parts) == "Face"
    assert part_of("keyturn.server.serve", parts) == "Server"
    assert part_of("keyturn.service", parts) is None
