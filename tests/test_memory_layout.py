"""Compact serving structures (issue 8: a million products in 3 GB): colours as flat arrays,
lexical counts left in the file, product ids without a dict; each behaves as the plain form did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from search.colour import lookup
from search.index.colours import ColourIndex
from search.index.lexical import LexicalData, LexicalDataBuilder, LexicalIndex, StoredCounts
from search.types import ColourSource, ProductColour

DOCS: tuple[dict[str, list[str]], ...] = (
    {"title": ["oak", "chair", "oak"], "description": ["solid", "oak"]},
    {"title": ["walnut", "chair"], "brand": ["woodly"]},
    {},
    {"title": ["grey", "sofa"], "category": ["sofas"], "attributes": ["fabric"]},
)


def _colour(
    name: str, source: ColourSource = "text", share: float = 1.0, confidence: float = 1.0
) -> ProductColour:
    found = lookup(name)
    assert found is not None
    return ProductColour(
        found.name, found.family.value, found.hex, found.lab, source, share, confidence
    )


COLOURS: tuple[tuple[ProductColour, ...], ...] = (
    (_colour("navy"), _colour("white", "photo", 0.4, 0.8)),
    (),
    (_colour("red", confidence=0.9), _colour("black", confidence=0.9)),
    (_colour("multicolour"),),
    (),
)


class TestColourIndexLayout:
    @pytest.fixture
    def index(self) -> ColourIndex:
        return ColourIndex(COLOURS)

    def test_of_gives_back_every_colour_as_given(self, index: ColourIndex) -> None:
        assert len(index) == len(COLOURS)
        assert [index.of(doc) for doc in range(len(COLOURS))] == list(COLOURS)
        assert index.colours == COLOURS

    @pytest.mark.parametrize("doc", [-1, len(COLOURS)])
    def test_of_out_of_range(self, index: ColourIndex, doc: int) -> None:
        with pytest.raises(IndexError, match="out of range"):
            index.of(doc)

    def test_no_colour_objects_are_kept(self, index: ColourIndex) -> None:
        kept = [v for v in vars(index).values() if isinstance(v, (list, tuple, dict))]
        assert all(
            not any(isinstance(x, ProductColour) for x in v)
            for v in kept
            if not isinstance(v, dict)
        )
        assert index.has_colour.tolist() == [True, False, True, True, False]

    def test_round_trip_through_the_file(self, index: ColourIndex, tmp_path: Path) -> None:
        index.save(tmp_path / "colours.json")
        loaded = ColourIndex.load(tmp_path / "colours.json")
        assert [c.name for cs in loaded.colours for c in cs] == [
            c.name for cs in COLOURS for c in cs
        ]
        navy = lookup("navy")
        assert navy is not None
        np.testing.assert_allclose(loaded.match(navy), index.match(navy), atol=1e-3)

    def test_empty(self) -> None:
        index = ColourIndex([])
        assert len(index) == 0 and index.colours == ()
        assert index.family_counts(np.zeros(0, dtype=np.int64)) == {}


@pytest.fixture
def data() -> LexicalData:
    builder = LexicalDataBuilder()
    for doc in DOCS:
        builder.add(doc)
    return builder.build()


class TestStoredLexicalCounts:
    def test_load_leaves_the_counts_in_the_file(self, data: LexicalData, tmp_path: Path) -> None:
        data.save(tmp_path / "lexical.npz")
        loaded = LexicalData.load(tmp_path / "lexical.npz", data.terms)
        assert isinstance(loaded.counts, StoredCounts)
        assert list(loaded.counts) == sorted(data.counts) and len(loaded.counts) == 5
        assert loaded.n_docs == data.n_docs == len(DOCS)
        for name, matrix in data.counts.items():
            np.testing.assert_array_equal(loaded.counts[name].toarray(), matrix.toarray())
        np.testing.assert_array_equal(loaded.title_ids, data.title_ids)
        np.testing.assert_array_equal(loaded.title_ptr, data.title_ptr)
        np.testing.assert_array_equal(loaded.title_sequence(0), data.title_sequence(0))
        with pytest.raises(KeyError):
            loaded.counts["colour"]

    def test_doc_terms_read_one_row(self, data: LexicalData, tmp_path: Path) -> None:
        data.save(tmp_path / "lexical.npz")
        loaded = LexicalData.load(tmp_path / "lexical.npz", data.terms)
        for doc in range(len(DOCS)):
            expected = {data.terms.index(t) for terms in DOCS[doc].values() for t in terms}
            assert loaded.doc_terms(doc) == data.doc_terms(doc) == expected
        with pytest.raises(IndexError, match="out of range"):
            loaded.doc_terms(len(DOCS))

    def test_scores_match_the_in_memory_counts(self, data: LexicalData, tmp_path: Path) -> None:
        data.save(tmp_path / "lexical.npz")
        loaded = LexicalIndex(LexicalData.load(tmp_path / "lexical.npz", data.terms))
        built = LexicalIndex(data)
        groups = [[(built.term_ids["oak"], 1.0), (built.term_ids["walnut"], 0.5)]]
        np.testing.assert_array_equal(
            loaded.score_groups(groups).scores, built.score_groups(groups).scores
        )
        np.testing.assert_array_equal(loaded.df, built.df)

    def test_each_read_is_a_fresh_copy(self, data: LexicalData, tmp_path: Path) -> None:
        data.save(tmp_path / "lexical.npz")
        before = (tmp_path / "lexical.npz").read_bytes()
        loaded = LexicalData.load(tmp_path / "lexical.npz", data.terms)
        loaded.counts["title"].data[:] = 7.0
        assert (tmp_path / "lexical.npz").read_bytes() == before
        assert loaded.counts["title"].max() == 2.0

    def test_reads_after_the_file_is_removed(self, data: LexicalData, tmp_path: Path) -> None:
        data.save(tmp_path / "lexical.npz")
        loaded = LexicalData.load(tmp_path / "lexical.npz", data.terms)
        (tmp_path / "lexical.npz").unlink()  # an old snapshot cleaned up while serving
        np.testing.assert_array_equal(
            loaded.counts["title"].toarray(), data.counts["title"].toarray()
        )

    def test_file_rewritten_in_place_is_an_error(self, data: LexicalData, tmp_path: Path) -> None:
        data.save(tmp_path / "lexical.npz")
        loaded = LexicalData.load(tmp_path / "lexical.npz", data.terms)
        index = LexicalIndex(loaded)
        (tmp_path / "lexical.npz").write_bytes(b"truncated")  # same inode, new content
        with pytest.raises(OSError, match="rewritten since it was loaded"):
            loaded.counts["title"]
        with pytest.raises(OSError, match="rewritten since it was loaded"):
            loaded.doc_terms(0)
        # Scoring never reads the file.
        assert index.score_groups([[(index.term_ids["oak"], 1.0)]]).scores[0] > 0

    def test_compressed_file_is_read_into_memory(self, data: LexicalData, tmp_path: Path) -> None:
        path = tmp_path / "lexical.npz"
        data.save(tmp_path / "plain.npz")
        with np.load(tmp_path / "plain.npz") as npz:
            np.savez_compressed(path, **{key: npz[key] for key in npz.files})
        loaded = LexicalData.load(path, data.terms)
        assert isinstance(loaded.counts, dict)
        for name, matrix in data.counts.items():
            assert isinstance(loaded.counts[name], sparse.csr_matrix)
            np.testing.assert_array_equal(loaded.counts[name].toarray(), matrix.toarray())
        np.testing.assert_array_equal(loaded.title_ids, data.title_ids)
        assert loaded.doc_terms(1) == data.doc_terms(1)

    @pytest.mark.parametrize("compressed", [False, True])
    def test_vocabulary_mismatch_is_refused(
        self, data: LexicalData, tmp_path: Path, compressed: bool
    ) -> None:
        path = tmp_path / "lexical.npz"
        data.save(path)
        if compressed:
            with np.load(path) as npz:
                arrays = {key: npz[key] for key in npz.files}
            np.savez_compressed(path, **arrays)
        with pytest.raises(ValueError, match="term columns but the vocabulary has"):
            LexicalData.load(path, [*data.terms, "extra"])

    def test_empty(self, tmp_path: Path) -> None:
        empty = LexicalDataBuilder().build()
        empty.save(tmp_path / "lexical.npz")
        loaded = LexicalData.load(tmp_path / "lexical.npz", ())
        assert loaded.n_docs == 0 and LexicalIndex(loaded).n_docs == 0
