"""The package's layers (``ARCHITECTURE.md``): every import points down, and none goes round.

Each module's imports are read with :mod:`ast`, every one of them: at the top, inside a
function, and under ``if TYPE_CHECKING:``. A module belongs to the layer of its folder
(the modules at the root, the shells, to ``root``):

    core < upstream < callers < login < root < integrations < cli

and may import its own layer and those below it; the emulator stands on ``core`` alone and
only ``root`` (the pytest plugin) and ``cli`` may import it. No module imports itself back
through any loop of imports. ``core`` imports no I/O library and no clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "lwa_middleware"

#: The layers, lowest first; a module may import its own layer and those before it.
ORDER = ("core", "upstream", "callers", "login", "root", "integrations", "cli")
#: What a user imports or runs (and the shells' shared private base): the modules at the root.
ROOT_MODULES = {"__init__", "__main__", "_version", "_shell", "asgi", "wsgi", "testing", "gateway"}
#: Who may import the emulator (which itself imports only ``core``).
EMULATOR_USERS = {"root", "cli"}
#: Libraries that do I/O or read the clock: never imported by ``core``.
NOT_IN_CORE = {
    "asyncio", "time", "socketserver", "subprocess", "selectors", "http.client",
    "urllib.request", "httpx", "httpcore", "anyio", "aiohttp", "redis", "uvicorn",
}  # fmt: skip


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """The package's modules ``name`` imports, and the outside modules it imports."""
    inside: set[str] = set()
    outside: set[str] = set()
    is_package = path.name == "__init__.py"

    def add(target: str) -> None:
        if target == "lwa_middleware" or target.startswith("lwa_middleware."):
            while target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target != name:
                inside.add(target)
        else:
            outside.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in known else base)
    return inside, outside


def layer_of(module: str) -> str:
    """The layer of a dotted module name."""
    if module == "lwa_middleware.__main__":
        return "cli"  # ``python -m lwa_middleware`` runs the command
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ROOT_MODULES:  # the gateway may be a folder
        return "root"
    return parts[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imports_of(name, path, set(names))[0] for name, path in names.items()}


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the layering, as ``"a -> b"``."""
    wrong = []
    for module, targets in sorted(graph.items()):
        layer = layer_of(module)
        for target in sorted(targets):
            if target == "lwa_middleware._version":
                continue  # a constant, importing nothing: any layer may read it
            to = layer_of(target)
            if layer == "emulator":
                allowed = to in ("core", "emulator")
            elif to == "emulator":
                allowed = layer in EMULATOR_USERS
            else:
                allowed = ORDER.index(to) <= ORDER.index(layer)
            if not allowed:
                wrong.append(f"{module} ({layer}) -> {target} ({to})")
    return wrong


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_folder_is_a_known_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= {*ORDER, "emulator", "gateway"}, folders - set(ORDER)
    at_root = {p.stem for p in PACKAGE.glob("*.py")}
    assert at_root <= ROOT_MODULES, f"only what a user imports or runs: {at_root - ROOT_MODULES}"


def test_imports_point_down(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 50  # the whole package was read
    assert upward(graph) == []


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    assert [sorted(c) for c in circles(graph)] == []


def test_core_does_no_io() -> None:
    names = module_names()
    found = {}
    for name, path in names.items():
        if layer_of(name) == "core":
            outside = imports_of(name, path, set(names))[1]
            if bad := {m for m in outside if m in NOT_IN_CORE or m.split(".")[0] in NOT_IN_CORE}:
                found[name] = sorted(bad)
    assert found == {}


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """An upward import, one under ``if TYPE_CHECKING:``, a relative one, and a circle."""
    package = tmp_path / "lwa_middleware"
    for folder in ("core", "upstream"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lwa_middleware.upstream.b import B\n"
    )
    (package / "core" / "c.py").write_text("def f():\n    from . import a\n")
    (package / "upstream" / "b.py").write_text("from lwa_middleware.core import c\nB = 1\n")
    names = module_names(package)
    graph = {name: imports_of(name, path, set(names))[0] for name, path in names.items()}
    assert graph["lwa_middleware.core.c"] == {"lwa_middleware.core.a"}
    assert upward(graph) == ["lwa_middleware.core.a (core) -> lwa_middleware.upstream.b (upstream)"]
    assert circles(graph) == [
        frozenset({"lwa_middleware.core.a", "lwa_middleware.core.c", "lwa_middleware.upstream.b"})
    ]
