"""Vector search: exact while small, an HNSW graph past the threshold, filters searched exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.index.snapshot import TEXT_ANN, read_manifest
from search.retrievers import VectorIndex, build_ann
from search.types import Product, SearchRequest


def unit_rows(n: int, dim: int = 16, seed: int = 0) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class TestVectorIndex:
    @pytest.mark.parametrize("with_ann", [False, True])
    def test_nearest_neighbours_match_exact_search(self, with_ann: bool) -> None:
        vectors = unit_rows(2000)
        index = VectorIndex(vectors, build_ann(vectors) if with_ann else None)
        query = vectors[17] + 0.01 * unit_rows(1, seed=1)[0]
        sims, docs = index.search(query, 10)
        exact = np.argsort(-(vectors @ query))[:10]
        assert docs[0] == 17
        assert len(set(docs) & set(exact)) >= 9
        assert np.all(np.diff(sims) <= 1e-6)

    def test_filtered_search_is_exact_over_the_allowed_products(self) -> None:
        vectors = unit_rows(2000)
        index = VectorIndex(vectors, build_ann(vectors))
        allowed = np.zeros(2000, dtype=bool)
        allowed[1000:1010] = True
        _sims, docs = index.search(vectors[3], 5, allowed)
        assert set(docs) <= set(range(1000, 1010)) and len(docs) == 5
        expected = 1000 + np.argsort(-(vectors[1000:1010] @ vectors[3]))[:5]
        assert list(docs) == list(expected)
        assert index.search(vectors[3], 5, np.zeros(2000, dtype=bool))[1].size == 0

    def test_mismatched_graph_is_refused(self) -> None:
        with pytest.raises(ValueError, match="ANN index holds 10 vectors"):
            VectorIndex(unit_rows(20), build_ann(unit_rows(10)))

    def test_empty(self) -> None:
        index = VectorIndex(np.zeros((0, 16), dtype=np.float32))
        assert len(index) == 0
        assert index.search(unit_rows(1)[0], 5)[1].size == 0


class ConceptEmbedder:
    """Tiny deterministic embedder: a product's vector is its word hash bucket (no weights)."""

    name = "concept"
    version = "1"
    dim = 8
    min_similarity = 0.1

    def warm_up(self) -> None:
        """Nothing to load."""

    def _vector(self, text: str) -> npt.NDArray[np.float32]:
        row = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().split():
            row[sum(map(ord, word.strip(".,"))) % self.dim] += 1.0
        return row / max(float(np.linalg.norm(row)), 1e-9)

    def embed_queries(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return np.vstack([self._vector(t) for t in texts])

    def embed_documents(
        self, texts: list[str], batch_size: int = 64, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        return np.vstack([self._vector(t) for t in texts])


def test_snapshot_carries_a_graph_past_the_threshold(tmp_path: Path) -> None:
    products = [Product(id=str(i), title=f"item {i} colour {i % 7}") for i in range(60)]
    embedder = ConceptEmbedder()
    build_snapshot(
        products,
        tmp_path / "ann",
        config=BuildConfig(ann_threshold=50),
        embedder=embedder,  # type: ignore[arg-type]
    )
    build_snapshot(
        products,
        tmp_path / "flat",
        config=BuildConfig(ann_threshold=100),
        embedder=embedder,  # type: ignore[arg-type]
    )
    assert TEXT_ANN in read_manifest(tmp_path / "ann").files
    assert TEXT_ANN not in read_manifest(tmp_path / "flat").files
    with_ann = open_snapshot(tmp_path / "ann", embedder=embedder, ranker="none")  # type: ignore[arg-type]
    flat = open_snapshot(tmp_path / "flat", embedder=embedder, ranker="none")  # type: ignore[arg-type]
    assert with_ann.vector_index is not None and with_ann.vector_index.ann is not None
    assert flat.vector_index is not None and flat.vector_index.ann is None
    request = SearchRequest(text="colour 3", k=5, as_you_type=False)
    assert [h.product.id for h in with_ann.search(request).hits] == [
        h.product.id for h in flat.search(request).hits
    ]
