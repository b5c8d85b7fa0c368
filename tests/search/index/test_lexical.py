"""BM25F over fields: field weights, idf, term-group scoring and persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.index.lexical import (
    FIELD_NAMES,
    Bm25Params,
    FieldParams,
    LexicalData,
    LexicalDataBuilder,
    LexicalIndex,
)

# Hand-built documents: field -> terms.
DOCS: tuple[dict[str, list[str]], ...] = (
    {"title": ["lamp", "desk"], "description": ["bright", "light"]},  # 0: lamp in the title
    {"title": ["desk"], "description": ["lamp", "bright"]},  # 1: lamp only in the description
    {"title": ["chair"], "brand": ["woodly"]},  # 2
    {"title": ["desk", "chair"], "category": ["office"]},  # 3
)


@pytest.fixture(scope="module")
def data() -> LexicalData:
    """Counts of :data:`DOCS`."""
    builder = LexicalDataBuilder()
    for doc in DOCS:
        builder.add(doc)
    return builder.build()


@pytest.fixture(scope="module")
def index(data: LexicalData) -> LexicalIndex:
    """BM25F index with the default parameters."""
    return LexicalIndex(data)


def tid(index: LexicalIndex, term: str) -> int:
    """Column of a term."""
    return index.term_ids[term]


class TestLexicalDataBuilder:
    def test_counts(self, data: LexicalData) -> None:
        assert data.n_docs == len(DOCS)
        assert set(data.counts) == set(FIELD_NAMES)
        assert set(data.terms) == {"lamp", "desk", "bright", "light", "chair", "woodly", "office"}
        title = data.counts["title"].toarray()
        assert title[0, data.terms.index("lamp")] == 1
        assert title[1, data.terms.index("lamp")] == 0

    def test_repeated_term_is_a_frequency(self) -> None:
        builder = LexicalDataBuilder()
        builder.add({"title": ["oak", "oak", "chair"]})
        data = builder.build()
        assert data.counts["title"].toarray()[0, data.terms.index("oak")] == 2

    def test_empty(self) -> None:
        data = LexicalDataBuilder().build()
        assert data.n_docs == 0
        assert data.terms == ()

    def test_unknown_field_lists_the_valid_ones(self) -> None:
        with pytest.raises(ValueError, match="valid fields: title, brand"):
            LexicalDataBuilder().add({"colour": ["red"]})

    def test_term_id_adds_terms_without_postings(self) -> None:
        builder = LexicalDataBuilder()
        builder.add({"title": ["oak"]})
        new = builder.term_id("walnut")
        assert builder.term_id("oak") == 0
        data = builder.build()
        assert data.terms[new] == "walnut"
        assert data.counts["title"].shape == (1, 2)


class TestLexicalIndex:
    def test_title_outranks_description(self, index: LexicalIndex) -> None:
        scores = index.score_groups([[(tid(index, "lamp"), 1.0)]]).scores
        assert scores[0] > scores[1] > 0
        assert scores[2] == scores[3] == 0

    def test_rarer_term_has_higher_idf(self, index: LexicalIndex) -> None:
        # desk: 3 documents, chair: 2, woodly: 1.
        assert index.doc_freq("desk") == 3
        assert index.doc_freq("chair") == 2
        assert index.doc_freq("woodly") == 1
        idf = index.idf
        assert idf[tid(index, "woodly")] > idf[tid(index, "chair")] > idf[tid(index, "desk")] > 0

    def test_idf_formula(self, index: LexicalIndex) -> None:
        n, df = len(DOCS), 2
        expected = np.log1p((n - df + 0.5) / (df + 0.5))
        assert index.idf[tid(index, "chair")] == pytest.approx(expected)

    def test_unknown_term_has_no_documents(self, index: LexicalIndex) -> None:
        assert index.doc_freq("sofa") == 0

    def test_document_frequency_counts_any_field(self, index: LexicalIndex) -> None:
        assert index.doc_freq("lamp") == 2  # title of 0, description of 1

    def test_field_weight_zero_ignores_the_field(self, data: LexicalData) -> None:
        fields = {name: FieldParams(1.0, 0.0) for name in FIELD_NAMES}
        fields["description"] = FieldParams(0.0, 0.0)
        index = LexicalIndex(data, Bm25Params(fields=fields))
        scores = index.score_groups([[(tid(index, "lamp"), 1.0)]]).scores
        assert scores[0] > 0
        assert scores[1] == 0

    def test_postings(self, index: LexicalIndex) -> None:
        docs, contrib = index.postings(tid(index, "desk"))
        assert sorted(docs.tolist()) == [0, 1, 3]
        assert (contrib > 0).all()


class TestScoreGroups:
    @pytest.mark.parametrize(
        ("groups", "n_groups"),
        [([], 0), ([[]], 1), ([[], []], 2)],
        ids=["no groups", "one empty group", "two empty groups"],
    )
    def test_empty(
        self, index: LexicalIndex, groups: list[list[tuple[int, float]]], n_groups: int
    ) -> None:
        result = index.score_groups(groups)
        assert result.n_groups == n_groups
        assert not result.scores.any()
        assert not result.matched.any()

    def test_alternatives_of_a_group_count_once(self, index: LexicalIndex) -> None:
        lamp, desk = tid(index, "lamp"), tid(index, "desk")
        lamp_only = index.score_groups([[(lamp, 1.0)]]).scores
        desk_only = index.score_groups([[(desk, 1.0)]]).scores
        grouped = index.score_groups([[(lamp, 1.0), (desk, 1.0)]])
        # Document 0 has both terms: the group scores the better one, not the sum.
        assert grouped.scores[0] == pytest.approx(max(lamp_only[0], desk_only[0]))
        assert grouped.scores[0] < lamp_only[0] + desk_only[0]
        assert grouped.matched.tolist() == [1, 1, 0, 1]
        assert grouped.n_groups == 1

    def test_separate_groups_add_up(self, index: LexicalIndex) -> None:
        lamp, desk = tid(index, "lamp"), tid(index, "desk")
        lamp_only = index.score_groups([[(lamp, 1.0)]]).scores
        desk_only = index.score_groups([[(desk, 1.0)]]).scores
        both = index.score_groups([[(lamp, 1.0)], [(desk, 1.0)]])
        np.testing.assert_allclose(both.scores, lamp_only + desk_only, rtol=1e-6)
        assert both.matched.tolist() == [2, 2, 0, 1]
        assert both.n_groups == 2

    @pytest.mark.parametrize("alternatives", [1, 2], ids=["single", "multiple"])
    def test_weight_scales_the_contribution(self, index: LexicalIndex, alternatives: int) -> None:
        chair = tid(index, "chair")
        extra = [(tid(index, "woodly"), 0.0)] if alternatives == 2 else []
        full = index.score_groups([[(chair, 1.0), *extra]]).scores
        half = index.score_groups([[(chair, 0.5), *extra]]).scores
        np.testing.assert_allclose(half, full * 0.5, rtol=1e-6)

    def test_exact_match_beats_a_weaker_alternative(self, index: LexicalIndex) -> None:
        # A group holding an exact term and a down-weighted correction: the exact term wins.
        chair, desk = tid(index, "chair"), tid(index, "desk")
        result = index.score_groups([[(chair, 1.0), (desk, 0.8)]])
        chair_only = index.score_groups([[(chair, 1.0)]]).scores
        assert result.scores[3] == pytest.approx(chair_only[3])

    def test_group_state_does_not_leak_into_the_next(self, index: LexicalIndex) -> None:
        lamp, desk, chair = tid(index, "lamp"), tid(index, "desk"), tid(index, "chair")
        twice = index.score_groups([[(lamp, 1.0), (desk, 1.0)], [(chair, 1.0), (desk, 0.1)]])
        first = index.score_groups([[(lamp, 1.0), (desk, 1.0)]]).scores
        second = index.score_groups([[(chair, 1.0), (desk, 0.1)]]).scores
        np.testing.assert_allclose(twice.scores, first + second, rtol=1e-6)

    def test_term_without_postings_matches_nothing(self) -> None:
        builder = LexicalDataBuilder()
        builder.add({"title": ["oak"]})
        orphan = builder.term_id("walnut")
        index = LexicalIndex(builder.build())
        for group in ([(orphan, 1.0)], [(orphan, 1.0), (orphan, 0.5)]):
            result = index.score_groups([group])
            assert result.matched.tolist() == [0]
            assert result.scores.tolist() == [0.0]


class TestPersistence:
    def test_round_trip(self, data: LexicalData, index: LexicalIndex, tmp_path: Path) -> None:
        path = tmp_path / "lexical.npz"
        data.save(path)
        loaded = LexicalData.load(path, data.terms)
        assert loaded.terms == data.terms
        assert loaded.n_docs == data.n_docs
        assert set(loaded.counts) == set(data.counts)
        for name, matrix in data.counts.items():
            np.testing.assert_array_equal(loaded.counts[name].toarray(), matrix.toarray())
        groups = [
            [(tid(index, "lamp"), 1.0), (tid(index, "chair"), 0.7)],
            [(tid(index, "desk"), 1.0)],
        ]
        np.testing.assert_array_equal(
            LexicalIndex(loaded).score_groups(groups).scores, index.score_groups(groups).scores
        )

    @pytest.mark.parametrize("delta", [-1, 1])
    def test_mismatched_vocabulary(self, data: LexicalData, tmp_path: Path, delta: int) -> None:
        path = tmp_path / "lexical.npz"
        data.save(path)
        terms = list(data.terms[:-1]) if delta < 0 else [*data.terms, "extra"]
        with pytest.raises(ValueError, match="term columns but the vocabulary has"):
            LexicalData.load(path, terms)
