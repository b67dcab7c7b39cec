"""The project's modules import each other without a cycle, and without an import tucked inside
a function to dodge one. Dependencies point one way (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("accounts", "billing", "chatrooms", "core", "gemini_clone", "testing", "usage")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "tests" in parts or "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


Statement = ast.Import | ast.ImportFrom


def _imports(tree: ast.Module) -> Iterator[tuple[Statement, bool]]:
    """Every import statement, and whether it sits inside a function; not those under
    `if TYPE_CHECKING:` (they never run)."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[Statement, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from walk(child, inside)

    return walk(tree, False)


def _targets(statement: Statement, modules: dict[str, Path]) -> set[str]:
    if isinstance(statement, ast.Import):
        names = [alias.name for alias in statement.names]
    else:
        base = statement.module or ""
        names = [f"{base}.{alias.name}" for alias in statement.names] + [base]
    targets = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            targets.add(name)
    return targets


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    deferred = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for statement, in_function in _imports(tree):
            targets = _targets(statement, modules) - {name}
            # A package's own __init__ is not a dependency of its modules.
            targets = {t for t in targets if not name.startswith(f"{t}.")}
            graph[name] |= targets
            if in_function and targets:
                deferred.append(f"{name} (line {statement.lineno}) imports {sorted(targets)}")
    return graph, deferred


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle():
    graph, _ = _graph()

    assert _cycles(graph) == []


def test_no_module_imports_another_of_ours_inside_a_function():
    _, deferred = _graph()

    assert deferred == []


def test_the_check_sees_a_cycle_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert _cycles(graph) == [["a", "b", "c"]]


# ARCHITECTURE.md: chatrooms → usage → billing → accounts, all above core. The project
# package (settings, URLs, the composed `user` object) and the test helpers sit above them all.
LAYERS = ("core", "accounts", "billing", "usage", "chatrooms")


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        layer = module.split(".")[0]
        if layer not in LAYERS:
            continue
        for target in sorted(targets):
            above = target.split(".")[0]
            if above not in LAYERS or LAYERS.index(above) > LAYERS.index(layer):
                found.append(f"{module} imports {target}")
    return found


def test_dependencies_point_one_way():
    graph, _ = _graph()

    assert _upward_imports(graph) == []


def test_the_check_sees_an_upward_import():
    graph = {"accounts.api.payloads": {"usage.selectors", "core.errors"}}

    assert _upward_imports(graph) == ["accounts.api.payloads imports usage.selectors"]
