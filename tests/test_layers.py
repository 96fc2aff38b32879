"""The import graph: every module imports only from its own layer or the layers below, and nothing imports in a circle.

The layers follow the pipeline: foundations (errors, the shared parser, models, files, running a model), then
data -> train -> infer -> evaluate, then the vertical slices built on all of them (volumes, importers, the
synthetic sets, benchmarks), and the scripts on top. Imports inside functions count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first. A module may import from its own layer (without a cycle) or from any layer before it.
LAYERS = (
    "utils.errors",
    "utils.cli",
    "nets",
    "utils.io",
    "utils.runtime",
    "utils.data",
    "utils.metrics",
    "utils.train",
    "utils.infer",
    "utils.evaluate",
    "utils.volumes",
    "utils.crossval",
    "utils.importers",
    "utils.synthetic",
    "utils.bench",
    "utils.api",
    "scripts",
)
PACKAGES = ("utils", "nets")
MAX_MODULE_LINES = 350


def module_name(path: Path) -> str:
    """Dotted module name of a file under ROOT ('scripts.<name>' for the top-level scripts)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if len(parts) == 1:
        return f"scripts.{parts[0]}"
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_files() -> list[Path]:
    """Every Python file of the packages and the top-level scripts."""
    files = sorted(ROOT.glob("*.py"))
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, resolved to the most specific known module ('from a import b' may be one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] not in PACKAGES:
                continue
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (packages resolve to their __init__)."""
    files = {module_name(path): path for path in library_files()}
    known = set(files)
    graph = {}
    for name, path in files.items():
        targets = imported_modules(path, known)
        # 'from utils.x import y' also names the package utils.x; keep only the most specific module.
        graph[name] = {t for t in targets if t != name and not any(o.startswith(t + ".") for o in targets)}
    return graph


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix that names the module's layer."""
    if module == "utils":  # the package's __init__: a docstring
        return 0
    matches = [i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {Path(__file__).name}")
    return max(matches, key=lambda i: len(LAYERS[i]))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_imports_never_climb_a_layer() -> None:
    upward = [f"{source} ({LAYERS[layer_of(source)]}) imports {target} ({LAYERS[layer_of(target)]})"
              for source, targets in import_graph().items() for target in sorted(targets)
              if layer_of(target) > layer_of(source)]
    assert upward == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The two checks above catch what they claim: a hand-made circle and a climb."""
    graph = {"utils.data.a": {"utils.data.b"}, "utils.data.b": {"utils.data.a"}, "utils.io.c": {"utils.train.d"}}
    assert cycles(graph) == [["utils.data.a", "utils.data.b"]]
    assert layer_of("utils.io.c") < layer_of("utils.train.d")
    assert layer_of("utils.metrics") < layer_of("utils.train.loop") < layer_of("utils.infer.export")


def test_every_module_has_a_layer_and_stays_small() -> None:
    long = []
    for path in library_files():
        layer_of(module_name(path))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES and path.parent != ROOT:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long == []


@pytest.mark.parametrize("script", sorted(p.name for p in ROOT.glob("*.py")))
def test_scripts_are_thin(script: str) -> None:
    """A script is a door, not a room: its options and wiring, the work in the library."""
    assert len((ROOT / script).read_text(encoding="utf-8").splitlines()) <= 250
