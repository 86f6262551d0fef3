"""Layering of the package (issue #22): ``training`` never imports ``pipelines`` or ``adaptation``, and
``pipelines`` never imports ``training``, ``evaluation`` or ``adaptation``, at module level or inside a
function. Imports under ``if TYPE_CHECKING:`` do not run and are not counted."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import stylelipsync

PACKAGE = Path(stylelipsync.__file__).resolve().parent
FORBIDDEN = {
    "training": ("pipelines", "adaptation"),
    "pipelines": ("training", "evaluation", "adaptation"),
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def runtime_imports(path: Path, root: Path) -> set[str]:
    """Absolute names of the ``stylelipsync`` modules (or names in them) that ``path`` imports at run time;
    ``root`` is the folder holding the ``stylelipsync`` package (resolves relative imports)."""
    package = path.relative_to(root).parts[:-1]
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            names.add(name)
            names.update(f"{name}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "stylelipsync" or n.startswith("stylelipsync.")}


def upward_imports(layer: str, package: Path = PACKAGE) -> list[str]:
    """``module -> import`` lines of ``<package>/<layer>`` that reach a layer it must not import."""
    found = []
    for path in sorted((package / layer).rglob("*.py")):
        for name in sorted(runtime_imports(path, package.parent)):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                found.append(f"{path.relative_to(package.parent).as_posix()} -> {name}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_upward(layer: str) -> None:
    found = upward_imports(layer)
    assert not found, f"stylelipsync.{layer} must not import {FORBIDDEN[layer]}:\n" + "\n".join(found)


def test_the_check_sees_function_level_imports_and_skips_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "stylelipsync"
    (package / "training").mkdir(parents=True)
    (package / "training" / "__init__.py").write_text("from stylelipsync.training import config\n")
    (package / "training" / "probe.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from stylelipsync.pipelines import LipSyncPipeline\n"
        "else:\n"
        "    import stylelipsync.pipelines.plan\n"
        "def f() -> None:\n"
        "    from ..adaptation import pipeline\n"
    )
    assert upward_imports("training", package) == [
        "stylelipsync/training/probe.py -> stylelipsync.adaptation",
        "stylelipsync/training/probe.py -> stylelipsync.adaptation.pipeline",
        "stylelipsync/training/probe.py -> stylelipsync.pipelines.plan",
    ]
