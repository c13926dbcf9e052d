"""The package's imports point one way: no module imports (directly or through others) a module that imports
it, and no import runs up the layers of docs/architecture.md. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__import__("facetransfer").__file__).parent

# top to bottom: a module may import its own layer and the layers below it
LAYERS = [
    ["cli"],
    ["export"],
    ["sweep"],
    ["strategies"],
    ["training"],
    ["verification"],
    ["data"],
    ["detection"],
    ["features"],
    ["models"],
    ["registry", "preprocess", "config_errors"],
    ["io"],
    ["errors", "_lazy"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, at any depth of its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 and not parts[-1] == "__main__" else None


def test_no_module_imports_a_module_that_imports_it():
    edges = graph()
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, circles


def test_imports_point_down_the_layers():
    every_layer = {module.split(".")[1] for module in graph() if module.count(".") >= 1}
    assert every_layer - {"__main__"} <= set(RANK), f"place these in LAYERS: {every_layer - set(RANK)}"
    upward = [
        f"{module} -> {target}"
        for module, targets in graph().items()
        for target in targets
        if layer(module) is not None and layer(target) is not None and layer(target) < layer(module)
    ]
    assert not upward, upward
