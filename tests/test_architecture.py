"""The code base's structure rules, checked on the source with ``ast`` (nothing is imported):

- the pure and inner layers (``domain``, the ``analytics`` rule modules, ``storage``,
  ``services``) never import the outer ones (``miniport.web``, ``miniport.cli``);
- no import cycle between modules of ``src/miniport`` at module level (imports inside
  functions and under ``if TYPE_CHECKING:`` do not count: they run after both modules are
  loaded, or never);
- no function longer than 80 lines outside the migrations.

An import edge goes to the module named (``from pkg import sub`` to ``pkg.sub`` when ``sub``
is a module); the implicit import of a module's parent packages does not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "miniport"
INNER = ("miniport.domain", "miniport.analytics", "miniport.storage", "miniport.services")
OUTER = ("miniport.web", "miniport.cli")
MAX_FUNCTION_LINES = 80
# Known violations another change is removing; each entry names the module and what it imports.
ALLOWED_LAYER_VIOLATIONS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run when the module loads: not in functions or classes' methods, not
    under ``if TYPE_CHECKING:`` (its ``else`` branch does run)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    visit(block)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.With | ast.ClassDef):
                visit(node.body)

    visit(tree.body)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The miniport modules ``module`` imports at module level (edges of the import graph)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    targets: set[str] = set()
    for node in _module_level_imports(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        source = _resolve(module, path.name == "__init__.py", node)
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            targets.add(sub if sub in modules else source)
    return {t for t in targets if t == "miniport" or t.startswith("miniport.")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) & set(modules) for name, path in modules.items()}


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def test_inner_layers_do_not_import_web_or_cli() -> None:
    graph = _graph()
    violations = {
        (module, target)
        for module, targets in graph.items()
        if _within(module, INNER)
        for target in targets
        if _within(target, OUTER)
    }
    assert violations - ALLOWED_LAYER_VIOLATIONS == set()


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_no_long_function_outside_migrations() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines})")
    assert long == []


# --- the checker itself finds what it must ---
def test_checker_resolves_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "apps.py"
    source.write_text(
        "from ..web import deps\nfrom ..web.deps import require\nfrom .. import errors\n"
        "from . import store\nimport miniport.cli.common\nimport json\n"
    )
    modules = {
        name: Path()
        for name in ("miniport.errors", "miniport.web", "miniport.web.deps", "miniport.services")
    }
    assert _imports("miniport.services.apps", source, modules) == {
        "miniport.web.deps",
        "miniport.errors",
        "miniport.services",
        "miniport.cli.common",
    }
    init = ast.parse("from ..web import deps\n").body[0]
    assert isinstance(init, ast.ImportFrom)
    assert _resolve("miniport.services", True, init) == "miniport.web"


def test_checker_skips_type_checking_and_function_imports() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .client import A\nelse:\n    from .other import B\n"
        "def f():\n    from .late import C\n"
        "try:\n    from .fast import D\nexcept ImportError:\n    from .slow import D\n"
    )
    names = [n.module for n in _module_level_imports(tree) if isinstance(n, ast.ImportFrom)]
    assert names == ["typing", "other", "fast", "slow"]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"a"}}, [["a"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_checker_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert sorted(_cycles(graph)) == expected
