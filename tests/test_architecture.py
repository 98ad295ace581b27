"""The package's import graph follows docs/architecture.md: no cycle, and no arrow from a lower layer up.

Every ``import`` counts, including those inside functions (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` are for annotations only and do not. The layers are read from the table in
docs/architecture.md, so the document and the code cannot drift apart.
"""
from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fewshot"
DOC = ROOT / "docs" / "architecture.md"
METHOD_FILE_LIMIT = 200


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layers() -> list[list[str]]:
    """Module patterns of each layer, bottom first: the rows ``| n | name | `pattern`, ... |`` of the doc's table."""
    rows = re.findall(r"^\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", DOC.read_text(encoding="utf-8"), flags=re.M)
    assert rows, f"{DOC} has no layer table"
    ordered = sorted(rows, key=lambda row: int(row[0]))
    return [re.findall(r"`([^`]+)`", patterns) for _, patterns in ordered]


def layer_of(module: str) -> int:
    found = [i for i, patterns in enumerate(layers()) if any(fnmatch.fnmatchcase(module, p) for p in patterns)]
    assert len(found) == 1, f"{module} is in {len(found)} layers of {DOC}; it must be in exactly one"
    return found[0] + 1   # the number in the table


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _in_discovery(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside a registry's ``_import_builtin*`` function, which imports the package's own members so they
    register: discovery, not a dependency (the member imports the registry, never the other way at import time)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef) and node.name.startswith("_import_builtin"):
            return True
    return False


def imports_of(module: str, discovery: bool = True) -> set[str]:
    """The suite's modules that ``module`` imports (with ``discovery=False``: less a registry's discovery)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents) or (not discovery and _in_discovery(node, parents)):
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from fewshot.data import folder` imports the module fewshot.data.folder.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}
DEPENDENCIES = {module: imports_of(module, discovery=False) for module in MODULES}


def test_every_module_is_in_one_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_goes_up_a_layer(module):
    mine = layer_of(module)
    upward = sorted(other for other in GRAPH[module] if layer_of(other) > mine)
    assert not upward, f"{module} (layer {mine}) imports higher layers: {upward}"


def test_import_graph_has_no_cycle():
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(DEPENDENCIES[module]):
            if state.get(other) == 1:
                cycle = path[path.index(other):] + [other]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, path + [other])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_an_upward_arrow_and_a_cycle(tmp_path, monkeypatch):
    # The test must be able to fail: a lazy import from core up to the command is seen.
    assert layer_of("fewshot.core.atomic") < layer_of("fewshot.cli")
    monkeypatch.setitem(GRAPH, "fewshot.core.atomic", {"fewshot.cli"})
    monkeypatch.setitem(DEPENDENCIES, "fewshot.core.atomic", {"fewshot.cli"})
    with pytest.raises(AssertionError, match="imports higher layers"):
        test_no_import_goes_up_a_layer("fewshot.core.atomic")
    with pytest.raises(AssertionError, match="import cycle"):
        test_import_graph_has_no_cycle()


@pytest.mark.parametrize("path", sorted(p for p in (PACKAGE / "methods").glob("*.py")
                                         if p.name not in ("__init__.py", "base.py")), ids=lambda p: p.name)
def test_method_files_stay_short(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines < METHOD_FILE_LIMIT, f"{path.name} has {lines} lines; a method file stays under {METHOD_FILE_LIMIT}"
