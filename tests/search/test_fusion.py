"""Fusion of retriever runs: weighted reciprocal rank fusion and normalised score fusion."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest

from search.fusion import FUSERS, normalised_score_fusion, reciprocal_rank_fusion
from search.types import Hit

Fuser = Callable[..., list[Hit]]


def run(name: str, *docs_and_scores: tuple[int, float]) -> list[Hit]:
    """A retriever run, best first."""
    return [Hit(doc, score, name) for doc, score in docs_and_scores]


def as_pairs(hits: Sequence[Hit]) -> list[tuple[int, float]]:
    """Hits as (doc, score) pairs."""
    return [(h.doc, h.score) for h in hits]


LEXICAL = run("lexical", (1, 9.0), (2, 5.0))
SEMANTIC = run("semantic", (2, 0.9), (3, 0.5))


class TestFusers:
    @pytest.mark.parametrize("fuser", list(FUSERS.values()), ids=list(FUSERS))
    @pytest.mark.parametrize(
        "runs", [{}, {"lexical": []}, {"lexical": [], "semantic": []}], ids=["none", "one", "two"]
    )
    def test_empty_runs(self, fuser: Fuser, runs: Mapping[str, Sequence[Hit]]) -> None:
        assert fuser(runs) == []

    @pytest.mark.parametrize("fuser", list(FUSERS.values()), ids=list(FUSERS))
    def test_hits_are_marked_fused(self, fuser: Fuser) -> None:
        fused = fuser({"lexical": LEXICAL, "semantic": SEMANTIC})
        assert {h.source for h in fused} == {"fused"}
        assert sorted(h.doc for h in fused) == [1, 2, 3]

    @pytest.mark.parametrize("fuser", list(FUSERS.values()), ids=list(FUSERS))
    def test_zero_weight_drops_a_run(self, fuser: Fuser) -> None:
        fused = fuser({"lexical": LEXICAL, "semantic": SEMANTIC}, {"semantic": 0.0})
        assert [h.doc for h in fused] == [1, 2]
        assert fuser({"lexical": LEXICAL}, {"lexical": 0}) == []

    def test_registry(self) -> None:
        assert list(FUSERS) == ["rrf", "score"]
        assert FUSERS["rrf"] is reciprocal_rank_fusion
        assert FUSERS["score"] is normalised_score_fusion


class TestReciprocalRankFusion:
    def test_hand_computed(self) -> None:
        fused = reciprocal_rank_fusion({"lexical": LEXICAL, "semantic": SEMANTIC})
        assert [h.doc for h in fused] == [2, 1, 3]
        expected = {2: 1 / 62 + 1 / 61, 1: 1 / 61, 3: 1 / 62}
        for hit in fused:
            assert hit.score == pytest.approx(expected[hit.doc])

    def test_scores_are_ignored_only_ranks_count(self) -> None:
        a = reciprocal_rank_fusion({"r": run("r", (5, 1000.0), (6, 0.001))})
        b = reciprocal_rank_fusion({"r": run("r", (5, 0.2), (6, 0.1))})
        assert as_pairs(a) == as_pairs(b)

    def test_weights_and_k(self) -> None:
        fused = reciprocal_rank_fusion(
            {"lexical": LEXICAL, "semantic": SEMANTIC}, {"lexical": 2.0}, k=10.0
        )
        expected = {1: 2 / 11, 2: 2 / 12 + 1 / 11, 3: 1 / 12}
        assert [h.doc for h in fused] == [2, 1, 3]
        for hit in fused:
            assert hit.score == pytest.approx(expected[hit.doc])

    def test_missing_weight_is_one(self) -> None:
        a = reciprocal_rank_fusion({"lexical": LEXICAL}, {"other": 5.0})
        b = reciprocal_rank_fusion({"lexical": LEXICAL})
        assert as_pairs(a) == as_pairs(b)

    def test_ties_keep_the_first_runs_order(self) -> None:
        fused = reciprocal_rank_fusion({"a": run("a", (7, 1.0)), "b": run("b", (3, 1.0))})
        assert [h.doc for h in fused] == [7, 3]
        assert fused[0].score == fused[1].score


class TestNormalisedScoreFusion:
    def test_hand_computed(self) -> None:
        fused = normalised_score_fusion({"lexical": LEXICAL, "semantic": SEMANTIC})
        expected = {1: 9 / 9, 2: 5 / 9 + 0.9 / 0.9, 3: 0.5 / 0.9}
        assert [h.doc for h in fused] == [2, 1, 3]
        for hit in fused:
            assert hit.score == pytest.approx(expected[hit.doc])

    def test_weights(self) -> None:
        fused = normalised_score_fusion(
            {"lexical": LEXICAL, "semantic": SEMANTIC}, {"lexical": 0.5, "semantic": 2.0}
        )
        expected = {1: 0.5, 2: 0.5 * 5 / 9 + 2.0, 3: 2.0 * 0.5 / 0.9}
        for hit in fused:
            assert hit.score == pytest.approx(expected[hit.doc])

    def test_zero_best_score_does_not_divide_by_zero(self) -> None:
        fused = normalised_score_fusion({"r": run("r", (1, 0.0), (2, 0.0))})
        assert as_pairs(fused) == [(1, 0.0), (2, 0.0)]

    def test_negative_scores_count_as_zero(self) -> None:
        fused = normalised_score_fusion({"r": run("r", (1, 2.0), (2, -4.0))})
        assert as_pairs(fused) == [(1, 1.0), (2, 0.0)]
