"""No two modules of the package import each other, directly or round a loop (issue #22).

Every `import` counts, at module level and inside functions (a lazy import is still a dependency), and so do
the engine classes `engines.loader` imports by name from `engines.registry`; not those under
`if TYPE_CHECKING:`, which never run. A cycle makes the layers impossible to read and, at module
level, breaks as soon as the import order changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stylelipsync
from stylelipsync.engines.registry import REGISTRY

ROOT = Path(stylelipsync.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["stylelipsync", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _runtime_nodes(node: ast.AST) -> list[ast.AST]:
    """Every node below `node` except those in `if TYPE_CHECKING:` blocks."""
    out: list[ast.AST] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for other in child.orelse:
                out += [other, *_runtime_nodes(other)]
            continue
        out += [child, *_runtime_nodes(child)]
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports at run time."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in known and t != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_round_a_loop() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    graph["stylelipsync.engines.loader"] |= {where.partition(":")[0] for where in REGISTRY.values()}
    assert "stylelipsync.engines.registry" in graph["stylelipsync.engines"]  # the graph is read
    assert cycles(graph) == []
