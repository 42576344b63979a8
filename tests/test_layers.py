"""The four layers import only the layers below them (DESIGN §5): nas -> dashboards -> trials -> searchspace."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "searchspace": {"trials", "dashboards", "nas", "ray", "optuna"},
    "trials": {"dashboards", "nas", "ray"},
    "dashboards": {"nas", "ray"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_the_layers_above_it(layer):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[layer])
        for path in (ROOT / layer).rglob("*.py")
        if imported_packages(path) & FORBIDDEN[layer]
    }
    assert offenders == {}


def imported_modules(path: Path, layer: str) -> set[str]:
    """The modules of `layer` a file imports, anywhere in it (a function's import too), by dotted name."""
    package = list(path.relative_to(ROOT).parent.parts)  # what `from .` names, for a module and an __init__ alike
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module or ""
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return {n for n in names if n.split(".")[0] == layer}


@pytest.mark.parametrize("layer", ["searchspace", "trials", "dashboards", "nas"])
def test_the_modules_of_a_layer_import_each_other_without_a_circle(layer):
    # (a layer's own __init__ re-exports its modules: it is left out)
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in (ROOT / layer).rglob("*.py")
    }
    graph = {m: {n for n in imported_modules(p, layer) if n in modules and n not in (m, layer)} for m, p in modules.items() if m != layer}
    circles, done = [], set()

    def visit(module, path):
        if module in path:
            circles.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for other in sorted(graph[module]):
            visit(other, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert circles == []
