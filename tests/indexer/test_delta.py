"""Tests of :mod:`indexer.delta`: upserts and deletes over a snapshot, reusing what did not change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot, embedding_text
from indexer.delta import apply_changes, remove_hnsw_nodes
from search.errors import ProductNotFoundError, SnapshotError
from search.index.colours import ColourIndex
from search.index.snapshot import COLOURS, TEXT_ANN, TEXT_VECTORS, read_manifest
from search.types import Product, SearchRequest
from tests.api import PRODUCTS, PRODUCTS_BY_ID

ROOT = Path(__file__).resolve().parents[2]


class CountingEmbedder:
    """A deterministic toy text model that records every text it embeds.

    A text's vector is a bag of hashed words, so equal texts get equal vectors and a product
    found by a word shares a dimension with a query holding it.
    """

    version = "counting 1"
    min_similarity = 0.2

    def __init__(self, dim: int = 64, name: str = "counting") -> None:
        self.dim = dim
        self.name = name
        self.embedded: list[str] = []
        self.warmed = False

    def warm_up(self) -> None:
        self.warmed = True

    def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                out[row, zlib.crc32(word.encode()) % (self.dim - 1)] += 1.0
            out[row, -1] = 0.1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self._embed(texts)

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        self.embedded.extend(texts)
        return self._embed(texts)


NEW_LAMP = Product(
    id="LAMP-2",
    title="Floor lamp with linen shade",
    description="Tall floor lamp.",
    brand="Casa",
    categories=(("Home", "Lighting"),),
    colours=("white",),
    price=149.0,
    currency="EUR",
)


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    """A snapshot of the API test catalogue with counting-embedder vectors."""
    out = tmp_path / "base"
    build_snapshot(
        PRODUCTS, out, config=BuildConfig(photo_colours=False), embedder=CountingEmbedder()
    )
    return out


def vectors_by_id(snapshot: Path) -> dict[str, npt.NDArray[np.float32]]:
    engine = open_snapshot(snapshot, use_semantic=False, ranker="none")
    vectors = np.load(snapshot / TEXT_VECTORS)
    return {p.id: vectors[doc] for doc, p in enumerate(engine.store.products)}


def colours_by_id(snapshot: Path) -> dict[str, tuple[str, ...]]:
    engine = open_snapshot(snapshot, use_semantic=False, ranker="none")
    colours = ColourIndex.load(snapshot / COLOURS)
    return {
        p.id: tuple(c.name for c in colours.of(doc)) for doc, p in enumerate(engine.store.products)
    }


def lexical_by_term(snapshot: Path) -> dict[str, dict[tuple[str, str], float]]:
    """Per field, (product id, term) -> count, and each title as a term sequence: independent
    of term and document numbering."""
    import orjson

    from search.index.lexical import LexicalData

    engine = open_snapshot(snapshot, use_semantic=False, ranker="none")
    ids = [p.id for p in engine.store.products]
    terms = orjson.loads((snapshot / "terms.json").read_bytes())
    data = LexicalData.load(snapshot / "lexical.npz", terms)
    out: dict[str, dict[tuple[str, str], float]] = {}
    for name, matrix in data.counts.items():
        coo = matrix.tocoo()
        out[name] = {
            (ids[r], terms[c]): float(v) for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)
        }
    out["title sequence"] = {
        (ids[d], " ".join(terms[t] for t in data.title_sequence(d))): 1.0 for d in range(len(ids))
    }
    return out


def vocabulary_by_word(snapshot: Path) -> dict[str, tuple[int, tuple[str, ...], tuple[str, ...]]]:
    """word -> (document frequency, its index terms, its sound keys)."""
    import orjson

    from search.index.vocabulary import Vocabulary

    terms = orjson.loads((snapshot / "terms.json").read_bytes())
    vocabulary = Vocabulary.load(snapshot / "vocabulary.json")
    return {
        w: (
            int(vocabulary.df[i]),
            tuple(sorted(terms[t] for t in vocabulary.terms[i])),
            vocabulary.sound_keys[i],
        )
        for i, w in enumerate(vocabulary.words)
    }


class TestApplyChanges:
    """Insert, replace and delete products; only changed products are embedded and re-read."""

    def test_insert(self, base: Path, tmp_path: Path) -> None:
        embedder = CountingEmbedder()
        result = apply_changes(base, tmp_path / "new", upserts=[NEW_LAMP], embedder=embedder)
        assert result.inserted == ("LAMP-2",)
        assert result.replaced == result.deleted == result.unknown_deletes == ()
        assert embedder.embedded == [embedding_text(NEW_LAMP)]
        assert (result.embedded, result.vectors_reused) == (1, len(PRODUCTS))
        assert (result.colours_read, result.colours_reused) == (1, len(PRODUCTS))
        engine = open_snapshot(result.snapshot_dir, embedder=CountingEmbedder(), ranker="none")
        assert len(engine) == len(PRODUCTS) + 1
        assert engine.search_ids("floor lamp")[0] == "LAMP-2"
        assert engine.manifest.counts["products"] == len(PRODUCTS) + 1
        assert engine.manifest.models["text_embedder"] == "counting"

    def test_replace_changed_text_is_embedded(self, base: Path, tmp_path: Path) -> None:
        renamed = replace(PRODUCTS_BY_ID["SOFA-1"], title="Oslo three-seat settee")
        embedder = CountingEmbedder()
        result = apply_changes(base, tmp_path / "new", upserts=[renamed], embedder=embedder)
        assert result.replaced == ("SOFA-1",)
        assert result.inserted == ()
        assert embedder.embedded == [embedding_text(renamed)]
        engine = open_snapshot(result.snapshot_dir, use_semantic=False, ranker="none")
        assert engine.get_product("SOFA-1").title == "Oslo three-seat settee"
        # A product with a new text goes after the unchanged ones (with the new products).
        assert [p.id for p in engine.store.products] == [
            *(p.id for p in PRODUCTS if p.id != "SOFA-1"),
            "SOFA-1",
        ]
        assert engine.search_ids("settee") == ["SOFA-1"]
        old, new = vectors_by_id(base), vectors_by_id(result.snapshot_dir)
        assert not np.allclose(old["SOFA-1"], new["SOFA-1"])
        assert np.array_equal(
            new["SOFA-1"], CountingEmbedder()._embed([embedding_text(renamed)])[0]
        )

    def test_replace_same_text_reuses_vector_and_colours(self, base: Path, tmp_path: Path) -> None:
        cheaper = replace(PRODUCTS_BY_ID["SOFA-2"], price=899.0, sale_price=None)
        embedder = CountingEmbedder()
        result = apply_changes(base, tmp_path / "new", upserts=[cheaper], embedder=embedder)
        assert result.replaced == ("SOFA-2",)
        assert embedder.embedded == []
        assert not embedder.warmed  # nothing to embed: the model is never loaded
        engine = open_snapshot(result.snapshot_dir, use_semantic=False, ranker="none")
        assert [p.id for p in engine.store.products] == [p.id for p in PRODUCTS]  # same place
        assert (result.embedded, result.colours_read) == (0, 0)
        old, new = vectors_by_id(base), vectors_by_id(result.snapshot_dir)
        assert all(np.array_equal(old[i], new[i]) for i in old)
        assert engine.get_product("SOFA-2").effective_price == 899.0

    def test_colour_change_is_read_again(self, base: Path, tmp_path: Path) -> None:
        recoloured = replace(PRODUCTS_BY_ID["SOFA-3"], colours=("red",))
        result = apply_changes(
            base, tmp_path / "new", upserts=[recoloured], embedder=CountingEmbedder()
        )
        assert (result.colours_read, result.embedded) == (1, 0)
        old, new = colours_by_id(base), colours_by_id(result.snapshot_dir)
        assert old["SOFA-3"] == ("blue",)
        assert new["SOFA-3"] == ("red",)
        assert {i: c for i, c in new.items() if i != "SOFA-3"} == {
            i: c for i, c in old.items() if i != "SOFA-3"
        }

    def test_delete_and_unknown_delete(self, base: Path, tmp_path: Path) -> None:
        embedder = CountingEmbedder()
        result = apply_changes(
            base, tmp_path / "new", deletes=["CHAIR-1", "NO-SUCH", "CHAIR-1"], embedder=embedder
        )
        assert result.deleted == ("CHAIR-1",)
        assert result.unknown_deletes == ("NO-SUCH",)
        assert embedder.embedded == []
        engine = open_snapshot(result.snapshot_dir, embedder=CountingEmbedder(), ranker="none")
        assert len(engine) == len(PRODUCTS) - 1
        with pytest.raises(ProductNotFoundError):
            engine.get_product("CHAIR-1")
        assert "CHAIR-1" not in engine.search_ids("oak chair")
        assert "CHAIR-2" in engine.search_ids("dining chair")
        old, new = vectors_by_id(base), vectors_by_id(result.snapshot_dir)
        assert all(np.array_equal(old[i], v) for i, v in new.items())

    def test_result_matches_a_full_build(self, base: Path, tmp_path: Path) -> None:
        renamed = replace(PRODUCTS_BY_ID["TABLE-1"], title="Oak extendable dining table")
        redescribed = replace(PRODUCTS_BY_ID["CHAIR-2"], description="Curved walnut backrest.")
        result = apply_changes(
            base,
            tmp_path / "delta",
            upserts=[renamed, redescribed, NEW_LAMP],
            deletes=["CUSHION-1"],
            embedder=CountingEmbedder(),
        )
        # Analysed: the renamed, re-described and new products; the rest were copied.
        assert (result.analysed, result.embedded) == (3, 2)
        kept = [
            redescribed if p.id == "CHAIR-2" else p
            for p in PRODUCTS
            if p.id not in ("CUSHION-1", "TABLE-1")
        ]
        full = tmp_path / "full"
        build_snapshot(
            [*kept, renamed, NEW_LAMP],
            full,
            config=BuildConfig(photo_colours=False),
            embedder=CountingEmbedder(),
        )
        assert vectors_by_id(result.snapshot_dir).keys() == vectors_by_id(full).keys()
        for pid, vector in vectors_by_id(full).items():
            assert np.allclose(vectors_by_id(result.snapshot_dir)[pid], vector)
        assert colours_by_id(result.snapshot_dir) == colours_by_id(full)
        assert lexical_by_term(result.snapshot_dir) == lexical_by_term(full)
        assert vocabulary_by_word(result.snapshot_dir) == vocabulary_by_word(full)
        delta_engine = open_snapshot(result.snapshot_dir, embedder=CountingEmbedder())
        full_engine = open_snapshot(full, embedder=CountingEmbedder())
        queries = ("oak table", "sofa", "lamp", "linen", "walnut backrest", "extendible", "sofaa")
        for query in (*queries, "cushion", "chiar", ""):
            request = SearchRequest(text=query, k=20, explain=True)
            assert [
                (h.product.id, round(h.score, 5)) for h in delta_engine.search(request).hits
            ] == [(h.product.id, round(h.score, 5)) for h in full_engine.search(request).hits], (
                query
            )
        assert delta_engine.manifest.counts == full_engine.manifest.counts

    def test_replace_in_place(self, base: Path) -> None:
        before = read_manifest(base)
        result = apply_changes(base, base, upserts=[NEW_LAMP], embedder=CountingEmbedder())
        assert result.base_snapshot_id == before.snapshot_id
        after = read_manifest(base)
        assert after.snapshot_id == result.manifest.snapshot_id != before.snapshot_id
        assert len(open_snapshot(base, use_semantic=False, ranker="none")) == len(PRODUCTS) + 1
        assert sorted(p.name for p in base.parent.iterdir()) == ["base"]

    def test_existing_out_dir_is_refused_without_overwrite(
        self, base: Path, tmp_path: Path
    ) -> None:
        other = tmp_path / "other"
        build_snapshot(PRODUCTS[:2], other, config=BuildConfig(embedder="none"))
        with pytest.raises(SnapshotError, match="exists"):
            apply_changes(base, other, upserts=[NEW_LAMP], embedder=CountingEmbedder())

    def test_other_embedder_embeds_everything(self, base: Path, tmp_path: Path) -> None:
        embedder = CountingEmbedder(name="other-model")
        result = apply_changes(base, tmp_path / "new", deletes=["LAMP-1"], embedder=embedder)
        assert result.embedded == len(PRODUCTS) - 1
        assert sorted(embedder.embedded) == sorted(
            embedding_text(p) for p in PRODUCTS if p.id != "LAMP-1"
        )

    def test_lexical_only_snapshot(self, tmp_path: Path) -> None:
        base = tmp_path / "base"
        build_snapshot(PRODUCTS, base, config=BuildConfig(embedder="none"))
        result = apply_changes(base, tmp_path / "new", upserts=[NEW_LAMP])
        assert result.embedded == result.vectors_reused == 0
        engine = open_snapshot(result.snapshot_dir, ranker="none")
        assert TEXT_VECTORS not in engine.manifest.files
        assert engine.search_ids("floor lamp")[0] == "LAMP-2"

    @pytest.mark.parametrize(
        ("upserts", "deletes", "message"),
        [
            ([NEW_LAMP, NEW_LAMP], [], "unique ids; repeated: LAMP-2"),
            ([NEW_LAMP], ["LAMP-2"], "both upserted and deleted: LAMP-2"),
        ],
    )
    def test_bad_changes(
        self,
        base: Path,
        tmp_path: Path,
        upserts: list[Product],
        deletes: list[str],
        message: str,
    ) -> None:
        with pytest.raises(ValueError, match=message):
            apply_changes(base, tmp_path / "new", upserts=upserts, deletes=deletes)

    def test_no_changes(self, base: Path, tmp_path: Path) -> None:
        embedder = CountingEmbedder()
        result = apply_changes(base, tmp_path / "new", embedder=embedder)
        assert embedder.embedded == []
        assert result.manifest.counts == read_manifest(base).counts


class TestInterruptedBuild:
    """A build that fails or is killed midway leaves the serving snapshot intact."""

    def test_failed_build_leaves_snapshot(self, base: Path) -> None:
        before = read_manifest(base)

        class Broken(CountingEmbedder):
            def embed_documents(
                self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
            ) -> npt.NDArray[np.float32]:
                raise RuntimeError("out of memory")

        with pytest.raises(RuntimeError, match="out of memory"):
            apply_changes(base, base, upserts=[NEW_LAMP], embedder=Broken())
        assert read_manifest(base, verify=True) == before
        assert sorted(p.name for p in base.parent.iterdir()) == ["base"]

    def test_killed_build_leaves_snapshot(self, base: Path, tmp_path: Path) -> None:
        before = read_manifest(base)
        marker = tmp_path / "midway"
        # Killed while writing the new snapshot's files (the riskiest moment), in place.
        script = (
            "import sys, time\n"
            "from pathlib import Path\n"
            "from indexer.delta import apply_changes, remove_hnsw_nodes\n"
            "from tests.api import PRODUCTS\n"
            "from tests.indexer.test_delta import NEW_LAMP, CountingEmbedder\n"
            "base, marker = Path(sys.argv[1]), Path(sys.argv[2])\n"
            "def progress(stage, done, total):\n"
            "    if (stage, done) == ('write', 2):\n"
            "        marker.write_text('writing')\n"
            "        time.sleep(60)\n"
            "apply_changes(base, base, upserts=[NEW_LAMP], deletes=[PRODUCTS[0].id],\n"
            "              embedder=CountingEmbedder(), progress=progress)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(base), str(marker)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():
                assert proc.poll() is None, "the build ended before writing"
                assert time.monotonic() < deadline, "the build never reached the write stage"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        # It died with a half-written temporary folder (and its writer's lock file, which
        # nobody holds now) beside the untouched snapshot.
        left = sorted(p.name for p in base.parent.iterdir() if p.name.startswith(".base."))
        assert [name.split("-")[0] for name in left] == [".base.building", ".base.writer"]
        assert read_manifest(base, verify=True) == before
        engine = open_snapshot(base, embedder=CountingEmbedder(), ranker="none")
        assert len(engine) == len(PRODUCTS)
        assert engine.get_product(PRODUCTS[0].id).title == PRODUCTS[0].title
        # The next build of the snapshot clears them away.
        apply_changes(base, base, upserts=[NEW_LAMP], embedder=CountingEmbedder())
        assert not [p for p in base.parent.iterdir() if p.name.startswith(".base.")]


def catalogue(n: int) -> list[Product]:
    """``n`` generated products with distinct titles."""
    kinds = ("sofa", "chair", "table", "lamp", "rug", "shelf", "desk", "bed")
    woods = ("oak", "walnut", "pine", "birch", "ash", "teak", "maple")
    return [
        Product(
            id=f"P-{i}",
            title=f"{woods[i % 7]} {kinds[i % 8]} model {i}",
            brand=f"Brand{i % 11}",
            categories=(("Home", kinds[i % 8].title()),),
        )
        for i in range(n)
    ]


class TestGraphReuse:
    """Above the ANN threshold the old HNSW graph is updated, not rebuilt, and stays exact to
    the document order."""

    N = 300
    CONFIG = BuildConfig(photo_colours=False, ann_threshold=100)

    @pytest.fixture()
    def big_base(self, tmp_path: Path) -> Path:
        out = tmp_path / "big"
        build_snapshot(catalogue(self.N), out, config=self.CONFIG, embedder=CountingEmbedder())
        return out

    def graph(self, snapshot: Path) -> tuple[Any, npt.NDArray[np.float32]]:
        import faiss

        return faiss.read_index(str(snapshot / TEXT_ANN)), np.load(snapshot / TEXT_VECTORS)

    def test_graph_updated(self, big_base: Path, tmp_path: Path) -> None:
        products = catalogue(self.N)
        renamed = [replace(p, title=p.title + " deluxe") for p in products[10:13]]
        repriced = [replace(p, price=10.0) for p in products[20:25]]
        new = [
            replace(p, id=f"NEW-{i}", title=f"{p.title} mini") for i, p in enumerate(products[:5])
        ]
        deletes = [p.id for p in products[100:105]] + [products[0].id]
        result = apply_changes(
            big_base,
            tmp_path / "new",
            upserts=[*renamed, *repriced, *new],
            deletes=deletes,
            config=self.CONFIG,
            embedder=CountingEmbedder(),
        )
        assert result.ann_reused
        assert result.embedded == len(renamed) + len(new)
        index, vectors = self.graph(result.snapshot_dir)
        total = self.N - len(deletes) + len(new)
        assert index.ntotal == len(vectors) == total
        # Node i of the graph is document i: same vector.
        assert np.allclose(index.reconstruct_n(0, total), vectors)
        # The updated graph finds what exact search finds.
        index.hnsw.efSearch = 128
        _, found = index.search(vectors, 10)
        exact = np.argsort(-(vectors @ vectors.T), axis=1, kind="stable")[:, :10]
        scores = vectors @ vectors.T
        recall = np.mean(
            [np.isin(scores[q, found[q]], scores[q, exact[q]]).mean() for q in range(total)]
        )
        assert recall > 0.95
        assert found.min() >= 0 and found.max() < total
        engine = open_snapshot(result.snapshot_dir, embedder=CountingEmbedder(), ranker="none")
        assert engine.search_ids(new[0].title, k=3)[0] == "NEW-0"
        assert not set(deletes) & set(engine.search_ids("oak sofa model", k=250))

    def test_graph_rebuilt_after_many_changes(self, big_base: Path, tmp_path: Path) -> None:
        products = catalogue(self.N)
        result = apply_changes(
            big_base,
            tmp_path / "new",
            deletes=[p.id for p in products[: self.N // 2]],
            config=self.CONFIG,
            embedder=CountingEmbedder(),
        )
        assert not result.ann_reused
        index, vectors = self.graph(result.snapshot_dir)
        assert index.ntotal == len(vectors) == self.N // 2
        assert np.allclose(index.reconstruct_n(0, len(vectors)), vectors)


class TestRemoveHnswNodes:
    """Removing nodes from a faiss HNSW graph in place."""

    def test_remove_entry_point_and_more(self) -> None:
        import faiss

        from search.retrievers import build_ann

        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((2000, 32)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = build_ann(vectors)
        remove = np.zeros(len(vectors), dtype=bool)
        remove[rng.choice(len(vectors), 200, replace=False)] = True
        remove[index.hnsw.entry_point] = True
        kept = vectors[~remove]
        remove_hnsw_nodes(index, remove, kept)
        assert index.ntotal == len(kept)
        assert np.allclose(index.reconstruct_n(0, len(kept)), kept)
        neighbors = faiss.vector_to_array(index.hnsw.neighbors)
        assert neighbors.max() < len(kept)
        index.hnsw.efSearch = 128
        _, found = index.search(kept, 1)
        assert (found[:, 0] == np.arange(len(kept))).mean() > 0.99  # each finds itself

    def test_bad_sizes(self) -> None:
        from search.retrievers import build_ann

        vectors = np.eye(4, dtype=np.float32)
        with pytest.raises(ValueError, match="at least one must survive"):
            remove_hnsw_nodes(build_ann(vectors), np.ones(4, dtype=bool), vectors[:0])


class TestImageVectors:
    """Photo vectors (image search) are copied for products whose photos did not change."""

    @staticmethod
    def photo(path: Path, colour: tuple[int, int, int]) -> str:
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (64, 64), (255, 255, 255))
        ImageDraw.Draw(image).rectangle((12, 12, 52, 52), fill=colour)
        image.save(path)
        return str(path)

    def test_photo_vectors(self, tmp_path: Path) -> None:
        from search.index.snapshot import IMAGE_HAS, IMAGE_REPORT, IMAGE_VECTORS

        colours = [(200, 30, 30), (30, 30, 200), (30, 160, 30), (20, 20, 20)]
        products = [
            replace(p, images=(self.photo(tmp_path / f"{p.id}.png", colours[i % 4]),))
            for i, p in enumerate(PRODUCTS)
        ]
        config = BuildConfig(photo_colours=False, image_embedder="descriptor")
        base = tmp_path / "base"
        build_snapshot(products, base, config=config, embedder=CountingEmbedder())
        new_photo = replace(products[1], images=(self.photo(tmp_path / "new.png", (250, 220, 0)),))
        broken = replace(NEW_LAMP, images=(str(tmp_path / "missing.png"),))
        result = apply_changes(
            base,
            tmp_path / "delta",
            upserts=[new_photo, broken, replace(products[2], price=1.0)],
            deletes=[products[0].id],
            config=config,
            embedder=CountingEmbedder(),
        )
        assert result.images_embedded == 2  # the new photo and the new product
        old_vectors, new_vectors = (np.load(s / IMAGE_VECTORS) for s in (base, result.snapshot_dir))
        old_ids = [p.id for p in products]
        engine = open_snapshot(result.snapshot_dir, use_semantic=False, ranker="none")
        new_ids = [p.id for p in engine.store.products]
        for pid in (products[2].id, products[3].id, products[7].id):
            assert np.array_equal(new_vectors[new_ids.index(pid)], old_vectors[old_ids.index(pid)])
        changed = new_ids.index(products[1].id)
        assert not np.allclose(new_vectors[changed], old_vectors[1])
        has = np.load(result.snapshot_dir / IMAGE_HAS)
        assert has[changed] and not has[new_ids.index("LAMP-2")]
        problems = orjson.loads((result.snapshot_dir / IMAGE_REPORT).read_bytes())["problems"]
        assert [p["product_id"] for p in problems] == ["LAMP-2"]
        full = tmp_path / "full"
        build_snapshot(
            [p for p in engine.store.products], full, config=config, embedder=CountingEmbedder()
        )
        assert np.allclose(np.load(full / IMAGE_VECTORS), new_vectors)
        assert read_manifest(full).counts == result.manifest.counts
        assert read_manifest(full).models == result.manifest.models


def _sleep_after_writing_pid(path: str) -> None:
    """Run in a delta's child process by the test below."""
    Path(path).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_delta_child_dies_with_the_service(tmp_path: Path) -> None:
    """A service killed while its child builds a delta takes the child with it: an orphan
    would publish its snapshot after the restarted service had opened the old one."""
    pid_file = tmp_path / "child.pid"
    service = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from indexer.delta import run_off_process; "
            "from tests.indexer.test_delta import _sleep_after_writing_pid; "
            "run_off_process(_sleep_after_writing_pid, sys.argv[1])",
            str(pid_file),
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.1)
        child = int(pid_file.read_text())
        os.kill(service.pid, signal.SIGKILL)
        service.wait(timeout=30)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists():
            status = Path(f"/proc/{child}/status").read_text()
            if "zombie" in status:
                break
            assert time.monotonic() < deadline, "the child outlived the service"
            time.sleep(0.1)
    finally:
        if service.poll() is None:
            service.kill()
