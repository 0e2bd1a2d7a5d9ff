"""Every command's help starts with a one-line summary: the commands panel of ``--help`` shows
the first paragraph with its own line breaks (Typer's rich mode), so a summary wrapped in the
docstring came out broken mid-sentence at any terminal width."""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "src" / "miniport" / "cli"


def _registered(tree: ast.AST) -> set[str]:
    """Functions registered as ``app.command("name")(function)``."""
    return {
        node.args[0].id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Call)
        and ".command" in ast.unparse(node.func.func) and node.args
        and isinstance(node.args[0], ast.Name)
    }  # fmt: skip


def _commands() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    trees = {path: ast.parse(path.read_text()) for path in sorted(CLI.glob("*.py"))}
    registered = set().union(*(_registered(tree) for tree in trees.values()))
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            decorated = any(".command" in ast.unparse(d) for d in node.decorator_list)
            if decorated or node.name in registered:
                found.append((f"{path.name}:{node.lineno} {node.name}", node))
    return found


def test_commands_are_found() -> None:
    names = {name.split()[-1] for name, _ in _commands()}
    assert {"retention_command", "paths_command", "server_key_rotate"} <= names
    assert len(names) > 40


def test_each_command_help_starts_with_a_one_line_summary() -> None:
    wrapped = [
        name
        for name, node in _commands()
        if "\n" in (ast.get_docstring(node) or "").split("\n\n")[0]
    ]
    assert wrapped == []


def test_each_command_has_a_summary() -> None:
    """A command without a docstring shows an empty line in its group's commands panel."""
    bare = [name for name, node in _commands() if not ast.get_docstring(node)]
    assert bare == []
