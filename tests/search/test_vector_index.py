"""Compressed vector indexes (HNSW-SQ8, IVF-SQ8, IVF-PQ) with exact re-ranking, chosen by size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.index.snapshot import TEXT_ANN, TEXT_COMPRESSED, read_manifest
from search.retrievers import (
    VectorIndex,
    build_hnsw_sq8,
    build_ivf,
    build_vector_index,
    choose_index_kind,
    index_kind_of,
)
from search.types import Filters, Product, SearchRequest
from tests.search.test_vectors import ConceptEmbedder


def clustered_rows(
    n: int, dim: int = 16, clusters: int = 40, seed: int = 0
) -> npt.NDArray[np.float32]:
    """Unit rows around a few centres, as embeddings of a catalogue are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    rows = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim))
    rows = rows.astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def recall_at_10(index: VectorIndex, vectors: npt.NDArray[np.float32], queries: int = 50) -> float:
    found = 0
    for q in range(queries):
        query = vectors[q * 7] + 0.05 * clustered_rows(1, vectors.shape[1], seed=q + 1)[0]
        exact = set(np.argsort(-(vectors @ query))[:10])
        found += len(exact & set(index.search(query, 10)[1]))
    return found / (10 * queries)


class TestChooseIndexKind:
    @pytest.mark.parametrize(
        ("n", "kind", "expected"),
        [
            (0, "auto", "flat"),
            (19_999, "auto", "flat"),
            (20_000, "auto", "hnsw"),
            (199_999, "auto", "hnsw"),
            (200_000, "auto", "hnsw-sq8"),
            (1_000_000, "auto", "hnsw-sq8"),
            (1_000_000, "ivf-sq8", "ivf-sq8"),
            (1_000_000, "hnsw", "hnsw"),
            (1_000_000, "flat", "flat"),
            (50_000, "ivf-pq", "ivf-pq"),
            (10, "ivf-sq8", "flat"),
        ],
    )
    def test_kinds(self, n: int, kind: str, expected: str) -> None:
        assert choose_index_kind(n, kind) == expected

    def test_unknown_kind_lists_the_valid_ones(self) -> None:
        with pytest.raises(ValueError, match="valid: auto, flat, hnsw, hnsw-sq8, ivf-sq8, ivf-pq"):
            choose_index_kind(10, "annoy")


class TestCompressedIndex:
    @pytest.mark.parametrize("kind", ["ivf-sq8", "ivf-pq", "hnsw-sq8"])
    def test_recall_against_exact_search(self, kind: str) -> None:
        vectors = clustered_rows(4000)
        ann = build_hnsw_sq8(vectors) if kind == "hnsw-sq8" else build_ivf(vectors, kind, nlist=32)
        assert index_kind_of(ann) == kind and int(ann.ntotal) == 4000
        index = VectorIndex(vectors, ann, nprobe=8, rerank=50)
        assert recall_at_10(index, vectors) >= 0.95

    def test_similarities_are_exact_after_re_ranking(self) -> None:
        vectors = clustered_rows(3000)
        index = VectorIndex(vectors, build_ivf(vectors, "ivf-pq", nlist=16), nprobe=16)
        sims, docs = index.search(vectors[5], 10)
        assert docs[0] == 5
        np.testing.assert_allclose(sims, vectors[docs] @ vectors[5], rtol=1e-5)
        assert np.all(np.diff(sims) <= 1e-6)

    @pytest.mark.parametrize("kind", ["ivf-sq8", "hnsw-sq8"])
    @pytest.mark.parametrize("allowed_count", [0, 10, 1500, 2900])
    def test_filters_keep_only_allowed_products(self, kind: str, allowed_count: int) -> None:
        vectors = clustered_rows(3000)
        ann = build_hnsw_sq8(vectors) if kind == "hnsw-sq8" else build_ivf(vectors, nlist=16)
        # exact_limit 100: the 1500 and 2900 cases go through faiss with a bitmap selector.
        index = VectorIndex(vectors, ann, nprobe=4, exact_limit=100)
        allowed = np.zeros(3000, dtype=bool)
        allowed[np.random.default_rng(1).choice(3000, allowed_count, replace=False)] = True
        _sims, docs = index.search(vectors[3], 10, allowed)
        assert len(docs) == min(10, allowed_count)
        assert allowed[docs].all()
        if allowed_count:
            expected = np.flatnonzero(allowed)[np.argsort(-(vectors[allowed] @ vectors[3]))[:10]]
            assert len(set(docs) & set(expected)) >= 9

    def test_memory_mapped_vectors_are_not_copied(self, tmp_path: Path) -> None:
        np.save(tmp_path / "v.npy", clustered_rows(2000))
        vectors = np.load(tmp_path / "v.npy", mmap_mode="r")
        index = VectorIndex(vectors, build_ivf(vectors, nlist=16))
        assert isinstance(index.vectors, np.memmap)
        assert index.search(np.asarray(vectors[9]), 3)[1][0] == 9

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="valid: ivf-sq8, ivf-pq"):
            build_ivf(clustered_rows(100), "hnsw")
        with pytest.raises(ValueError, match="no vectors"):
            build_ivf(np.zeros((0, 16), dtype=np.float32))
        with pytest.raises(ValueError, match="no vectors"):
            build_hnsw_sq8(np.zeros((0, 16), dtype=np.float32))
        assert build_vector_index(clustered_rows(10), "flat") is None


def catalogue(n: int) -> list[Product]:
    colours = ["red", "blue", "green", "black", "white"]
    things = ["sofa", "chair", "lamp", "table", "shelf", "rug"]
    return [
        Product(
            id=str(i),
            title=f"{colours[i % 5]} {things[i % 6]} model {i}",
            brand=f"brand{i % 3}",
            price=float(i),
        )
        for i in range(n)
    ]


class TestSnapshotIndexKind:
    @pytest.mark.parametrize(
        ("kind", "file", "absent"),
        [
            ("hnsw-sq8", TEXT_COMPRESSED, TEXT_ANN),
            ("ivf-sq8", TEXT_COMPRESSED, TEXT_ANN),
            ("hnsw", TEXT_ANN, TEXT_COMPRESSED),
            ("flat", None, None),
        ],
    )
    def test_manifest_records_the_kind_and_the_engine_searches_it(
        self, tmp_path: Path, kind: str, file: str | None, absent: str | None
    ) -> None:
        embedder = ConceptEmbedder()
        manifest = build_snapshot(
            catalogue(400),
            tmp_path / "snap",
            config=BuildConfig(ann_threshold=50, vector_index=kind),
            embedder=embedder,  # type: ignore[arg-type]
        )
        assert manifest.settings["text_index"] == kind
        files = read_manifest(tmp_path / "snap").files
        if file is not None:
            assert file in files and absent not in files
        engine = open_snapshot(tmp_path / "snap", embedder=embedder, ranker="none")  # type: ignore[arg-type]
        assert engine.vector_index is not None and engine.vector_index.kind == kind
        assert isinstance(engine.vector_index.vectors, np.memmap)
        result = engine.search(SearchRequest("blue lamp", k=5))
        assert result.hits and "blue" in result.hits[0].product.title
        filtered = engine.search(SearchRequest("lamp", k=5, filters=Filters(brands=("brand1",))))
        assert all(h.product.brand == "brand1" for h in filtered.hits)

    def test_auto_compresses_from_the_threshold(self, tmp_path: Path) -> None:
        manifest = build_snapshot(
            catalogue(300),
            tmp_path / "snap",
            config=BuildConfig(ann_threshold=50, compressed_threshold=200),
            embedder=ConceptEmbedder(),  # type: ignore[arg-type]
        )
        assert manifest.settings["text_index"] == "hnsw-sq8"
        assert TEXT_COMPRESSED in manifest.files


def test_photo_vectors_past_the_threshold_get_product_quantised_codes(tmp_path: Path) -> None:
    from indexer.build import PhotoVectors, write_snapshot
    from search.index.snapshot import IMAGE_COMPRESSED

    products = catalogue(300)
    vectors = clustered_rows(300, dim=32)
    manifest = write_snapshot(
        products,
        tmp_path / "snap",
        config=BuildConfig(ann_threshold=50, compressed_threshold=200),
        vectors=None,
        images=PhotoVectors("test", "1", vectors, np.ones(300, dtype=bool), []),
        colours=[()] * 300,
        colour_report={},
        models={},
    )
    assert manifest.settings["image_index"] == "ivf-pq"
    assert IMAGE_COMPRESSED in manifest.files


def test_hnsw_rows_come_from_the_graphs_own_storage(tmp_path: Path) -> None:
    """An HNSW-flat graph holds every vector: feature rows and filtered searches read them from
    there (no pread per row of the mapped file), and they are the snapshot's vectors."""
    from search.retrievers import build_ann

    vectors = clustered_rows(600, dim=24)
    np.save(tmp_path / "v.npy", vectors)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    index = VectorIndex(mapped, build_ann(vectors))
    assert index.kind == "hnsw"
    assert index._fd is None  # nothing read through the file
    docs = np.array([5, 0, 599, 5, 321], dtype=np.int64)
    np.testing.assert_array_equal(index[docs], vectors[docs])
    rows = index[docs]
    rows[0] = 0.0  # a copy: the index's storage is untouched
    np.testing.assert_array_equal(index[docs[:1]], vectors[5:6])
    allowed = np.zeros(600, dtype=bool)
    allowed[::3] = True
    sims, found = index.search(vectors[9], 5, allowed)
    expected = np.flatnonzero(allowed)[np.argsort(-(vectors[allowed] @ vectors[9]))[:5]]
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(sims, vectors[expected] @ vectors[9], rtol=1e-6)
