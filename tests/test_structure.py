"""The package structure: the packages of ``soma`` form layers (each imports only the ones below it, so there is no
import cycle), and ``soma.peft`` needs only torch.

The graph counts every ``import`` (function-level ones too), by the first package under ``soma``
(``soma.models.backbones.dinov2`` → ``models``; top-level modules of ``soma`` count as
themselves).
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "soma"
# Lowest first: a package may import the ones before it, never one after it.
LAYERS = ("utils", "peft", "datasets", "config", "weights", "models", "evaluation", "engine", "convert", "analysis",
          "apis", "demo")
# What soma.peft may import: the standard library, torch/numpy/scipy, itself and the torch-only helpers of utils.
PEFT_ALLOWED = {"torch", "numpy", "scipy", "soma.peft", "soma.utils.checkpoint", "soma.utils.errors"}
PEFT_LAZY = {"peft", "transformers", "safetensors"}  # imported inside the functions that use them (HF interop)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(module, at_top_level)`` of every import in ``path``, relative imports resolved."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                names = [name] if node.module else [f"{name}.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
            found += [(name, id(node) in top_level) for name in names]
    return found


def _part(module: str) -> str | None:
    """The package of ``soma`` a module belongs to, or ``None`` outside ``soma``."""
    parts = module.split(".")
    if parts[0] != "soma" or len(parts) < 2:
        return None
    return parts[1]


def package_graph() -> dict[str, set[str]]:
    """Which package of ``soma`` imports which."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = _part(".".join(path.relative_to(REPO).with_suffix("").parts))
        for module, _ in _imports(path):
            target = _part(module)
            if source and target and target != source:
                graph[source].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [node])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_cycle_between_soma_packages():
    cycle = find_cycle(package_graph())
    assert cycle is None, f"import cycle between soma packages: {' -> '.join(cycle)}"


def test_every_package_imports_only_lower_layers():
    graph = package_graph()
    unknown = sorted((set(graph) | set().union(*graph.values())) - set(LAYERS))
    assert not unknown, f"packages {unknown} of soma have no place in LAYERS (tests/test_structure.py): add them"
    upward = [f"{source} -> {target}" for source, targets in graph.items() for target in targets
              if LAYERS.index(target) > LAYERS.index(source)]
    assert not upward, f"imports from a lower layer into a higher one: {upward} (LAYERS: {LAYERS})"


def test_the_root_package_imports_nothing():
    assert [module for module, _ in _imports(PACKAGE / "__init__.py") if module.startswith("soma")] == []


def test_soma_peft_imports_only_torch_and_itself():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted((PACKAGE / "peft").rglob("*.py")):
        for module, top_level in _imports(path):
            root = module.split(".")[0]
            if root in stdlib or any(module == a or module.startswith(a + ".") for a in PEFT_ALLOWED):
                continue
            assert root in PEFT_LAZY and not top_level, f"{path.relative_to(REPO)} imports {module}"
