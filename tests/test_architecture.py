"""The package's layering (docs/architecture.md), checked on the source: no import cycle, arrows only
downwards, no oversized module without a stated reason.

Imports are read with `ast` from every module, including imports inside functions (they run too, just later)
and the engine classes the engine loader imports by name from the registry; imports under
`if TYPE_CHECKING:` are left out, because they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from stylelipsync.pipelines.engines.registry import REGISTRY

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "stylelipsync"
MAX_LINES = 600
LENGTH_REASON = "Longer than 600 lines because"

LOW_LEVEL = ("media", "audio", "face", "models", "losses")
UPPER = (
    "pipelines",
    "engines",
    "training",
    "adaptation",
    "evaluation",
    "batch",
    "serve",
    "live",
    "remote",
    "cli",
)
FORBIDDEN = {
    **{low: UPPER for low in LOW_LEVEL},
    "training": ("pipelines", "adaptation", "batch", "serve", "live", "remote", "cli"),
    "pipelines": ("training", "adaptation", "evaluation", "batch", "serve", "live", "remote", "cli"),
    "serve": ("batch", "live", "training", "adaptation", "cli"),
    "batch": ("serve", "live", "training", "adaptation", "cli"),
    "live": ("serve", "batch", "training", "adaptation", "cli"),
    "evaluation": ("batch", "serve", "live", "training", "adaptation", "remote", "cli"),
    "cli_common": ("training", "adaptation", "evaluation", "batch", "serve", "live", "remote", "cli"),
}
"""Top-level part of the package → parts it must never import at run time (`cli` = the root command group)."""


def module_files() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that can run: all of them except those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_imports_in(child))
            continue
        yield from _runtime_imports_in(node)


def _runtime_imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _runtime_imports(node)


def imported_modules(name: str) -> set[str]:
    """The package's modules that module `name` imports at run time."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        found.update(t for t in targets if t in MODULES and t != name)
    return found | {parent for target in found for parent in _parents_run_first(target, name)}


def _parents_run_first(target: str, importer: str) -> Iterator[str]:
    """Packages whose `__init__` importing `target` runs first: its parents, except the root package and those
    the importer is itself inside (they are already being imported)."""
    parts = target.split(".")
    for depth in range(2, len(parts)):
        parent = ".".join(parts[:depth])
        if parent in MODULES and parent != importer and not importer.startswith(parent + "."):
            yield parent


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports at run time, the loader's by-name imports included."""
    graph = {name: imported_modules(name) for name in MODULES}
    graph["stylelipsync.pipelines.engines.loader"] |= {where.partition(":")[0] for where in REGISTRY.values()}
    return graph


GRAPH = import_graph()


def part(module: str) -> str:
    """The top-level part of the package a module belongs to (`pipelines`, `cli`, …)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_import_reader_sees_what_it_should() -> None:
    """The checks below are only as good as the import reader: it must see lazy and relative imports and skip
    TYPE_CHECKING ones."""
    assert "stylelipsync.cli_common" in GRAPH["stylelipsync.cli"]
    assert "stylelipsync.media" in GRAPH["stylelipsync.pipelines.lipsync"]
    assert "stylelipsync.pipelines.engines.bank" not in GRAPH["stylelipsync.pipelines.engines.bank.render"]
    assert "stylelipsync.pipelines.engines.bank" in GRAPH["stylelipsync.pipelines.engines.loader"]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import stylelipsync.cli\n"
        "def f():\n    import stylelipsync.errors\n"
    )
    names = [alias.name for node in _runtime_imports(tree) for alias in node.names]
    assert names == ["TYPE_CHECKING", "stylelipsync.errors"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_no_cycle_between_parts() -> None:
    """The top-level parts (`pipelines`, `training`, `serve`, …) layer too: no two import each other."""
    parts: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    parts = {name: {t for t in targets if t} for name, targets in parts.items() if name}
    cycle = find_cycle(parts)
    assert cycle is None, "parts import each other: " + " → ".join(cycle or [])


@pytest.mark.parametrize("low", sorted(FORBIDDEN))
def test_arrows_point_down(low: str) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if part(module) == low
        for target in targets
        if part(target) in FORBIDDEN[low]
    )
    assert not wrong, "\n".join(wrong)


def test_no_module_over_600_lines_without_a_reason() -> None:
    long = []
    for path in sorted(MODULES.values()):
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if len(text.splitlines()) > MAX_LINES and LENGTH_REASON not in doc:
            long.append(f"{path.relative_to(SRC)}: {len(text.splitlines())} lines")
    assert not long, f"split these, or say '{LENGTH_REASON} …' in their docstring:\n" + "\n".join(long)
