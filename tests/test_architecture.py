"""The package's import structure, read from its source (ARCHITECTURE.md says why).

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``.
The layers themselves are checked by import-linter (``lint-imports``, run by .ci/run,
configured in pyproject.toml); these tests check what a layers contract does not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "headrace"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    where = SOURCE.joinpath(*name.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def imports(path: Path) -> Iterator[tuple[str, str | None, int]]:
    """``(module, name or None, line)`` for every headrace import in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "headrace":
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "headrace":
                continue
            for alias in node.names:
                yield target, alias.name, node.lineno


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def edges() -> dict[str, set[str]]:
    """Module -> the headrace modules it imports (a submodule imported by name counts
    as the submodule; the package root, which loads names lazily, as itself)."""
    found: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, imported, _ in imports(path):
            full = f"{target}.{imported}" if imported else target
            found[name].add(full if imported and is_module(full) else target)
    return found


def test_no_module_imports_a_private_name_of_another_module() -> None:
    found = [
        f"{module_name(path)}:{line} imports {target}.{imported}"
        for path in MODULES.values()
        for target, imported, line in imports(path)
        if imported is not None
        and imported.startswith("_")
        and not is_module(f"{target}.{imported}")
        and target != module_name(path)
    ]
    assert found == []


def test_private_modules_are_imported_only_from_their_own_package() -> None:
    found = []
    for name, path in MODULES.items():
        for target, imported, line in imports(path):
            full = (
                f"{target}.{imported}" if imported and is_module(f"{target}.{imported}") else target
            )
            parts = full.split(".")
            for depth, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:depth])
                    if not (name == owner or name.startswith(owner + ".")):
                        found.append(f"{name}:{line} imports {full}")
    assert found == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = edges()
    # Tarjan's strongly connected components: any with two modules or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


@pytest.mark.parametrize("package", ["headrace.stages", "headrace.sources", "headrace.engine"])
def test_stages_sources_and_the_engine_never_reach_up_to_the_pipeline(package: str) -> None:
    above = ("headrace.pipeline", "headrace.run", "headrace.readers")
    found = sorted(
        f"{name} imports {target}"
        for name, targets in edges().items()
        if name == package or name.startswith(package + ".")
        for target in targets
        if target.startswith(above)
    )
    assert found == []
