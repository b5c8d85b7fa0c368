"""Metrics and query-set generators of ``benchmarks/common.py`` on hand-computed examples."""

from __future__ import annotations

import math
import random

import pytest

from benchmarks.common import (
    Metrics,
    evaluate,
    make_query_sets,
    mrr,
    ndcg_at_k,
    percentile,
    recall_at_k,
    sound_alikes,
    spelled_by_sound,
    with_keyboard_typo,
)

QREL = {"a": 3.0, "b": 2.0, "c": 1.67, "d": 1.0}


class TestNdcg:
    def test_hand_computed(self) -> None:
        # gains a=2, b=1, c=0.67, d=0; ranking b, x, a: DCG = 1/1 + 0 + 2/log2(4) = 2.
        ideal = 2 / 1 + 1 / math.log2(3) + 0.67 / 2
        assert ndcg_at_k(["b", "x", "a"], QREL) == pytest.approx(2 / ideal)

    def test_perfect_ranking_is_one(self) -> None:
        assert ndcg_at_k(["a", "b", "c", "d"], QREL) == pytest.approx(1.0)

    def test_cut_off(self) -> None:
        assert ndcg_at_k(["x", "a"], QREL, k=1) == 0.0

    def test_duplicates_count_once(self) -> None:
        assert ndcg_at_k(["b", "b"], {"b": 3.0, "e": 3.0}) == pytest.approx(
            1.0 / (1.0 + 1.0 / math.log2(3))
        )

    @pytest.mark.parametrize("qrel", [{"d": 1.0}, {}])
    def test_zero_ideal_is_undefined(self, qrel: dict[str, float]) -> None:
        assert ndcg_at_k(["d"], qrel) is None


class TestRecall:
    def test_only_grades_two_and_up_count(self) -> None:
        assert recall_at_k(["c", "a"], QREL) == pytest.approx(0.5)

    def test_cut_off(self) -> None:
        assert recall_at_k(["x", "a", "b"], QREL, k=2) == pytest.approx(0.5)

    def test_no_relevant_is_undefined(self) -> None:
        assert recall_at_k([], {"c": 1.67}) is None


class TestMrr:
    @pytest.mark.parametrize(
        ("ranked", "expected"), [(["x", "c", "b"], 1 / 3), (["a"], 1.0), ([], 0.0), (["c"], 0.0)]
    )
    def test_first_relevant(self, ranked: list[str], expected: float) -> None:
        assert mrr(ranked, QREL) == pytest.approx(expected)

    def test_beyond_cut_off_scores_zero(self) -> None:
        assert mrr(["x", "y", "a"], QREL, k=2) == 0.0

    def test_no_relevant_is_undefined(self) -> None:
        assert mrr(["d"], {"d": 1.0}) is None


class TestEvaluate:
    def test_means_and_counts(self) -> None:
        qrels = {"q1": QREL, "q2": {"d": 1.0}, "q3": {"a": 3.0}}
        run = {"q1": ["a", "b", "c", "d"], "q2": ["d"], "q3": ["x", "a"], "unjudged": ["a"]}
        m = evaluate(run, qrels)
        assert isinstance(m, Metrics)
        assert (m.queries, m.ndcg_queries, m.ndcg_skipped, m.relevant_queries) == (3, 2, 1, 2)
        assert m.ndcg_at_10 == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
        assert m.recall_at_100 == pytest.approx(1.0)
        assert m.mrr == pytest.approx(0.75)

    def test_empty_run(self) -> None:
        m = evaluate({}, {"q1": QREL})
        assert (m.queries, m.ndcg_at_10) == (0, 0.0)


def test_percentile_interpolates() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0], 100) == 2.0
    assert math.isnan(percentile([], 50))


def _changed_tokens(a: str, b: str) -> list[tuple[str, str]]:
    ta, tb = a.split(" "), b.split(" ")
    assert len(ta) == len(tb)
    return [(x, y) for x, y in zip(ta, tb, strict=True) if x != y]


QUERIES = [
    "delta windemere faucet",
    "1/2 in. pvc coupling elbow",
    "toilet",
    "Behr Premium paint 5 gal",
    "ceiling fan with light",
]


class TestKeyboardTypo:
    @pytest.mark.parametrize("query", QUERIES)
    def test_changes_exactly_one_word(self, query: str) -> None:
        for seed in range(20):
            typo = with_keyboard_typo(query, random.Random(seed))
            [(before, after)] = _changed_tokens(query, typo)
            assert before[0] == after[0]
            assert [c for c in before if c.isdigit()] == [c for c in after if c.isdigit()]

    @pytest.mark.parametrize("query", ["", "2x4 x 8", "1/2 pvc"])
    def test_no_long_word_is_unchanged(self, query: str) -> None:
        assert with_keyboard_typo(query, random.Random(0)) == query

    def test_deterministic(self) -> None:
        a = [with_keyboard_typo(q, random.Random(7)) for q in QUERIES]
        assert a == [with_keyboard_typo(q, random.Random(7)) for q in QUERIES]


def _two_steps(word: str) -> set[str]:
    one = {s for v in sound_alikes(word).values() for s in v}
    return one | {s for w in one for v in sound_alikes(w).values() for s in v}


class TestSpelledBySound:
    @pytest.mark.parametrize(
        ("word", "respelled"),
        [
            ("toilet", "toylet"),
            ("faucet", "fawcet"),
            ("phone", "fone"),
            ("knob", "nob"),
            ("ceiling", "seeling"),
            ("windemere", "windemeer"),
            ("light", "lite"),
            ("vinyl", "vinil"),
            ("screw", "scrue"),
            ("steel", "steal"),
            ("cabinet", "kabinet"),
            ("handle", "handel"),
        ],
    )
    def test_docstring_examples_are_reachable(self, word: str, respelled: str) -> None:
        assert respelled in _two_steps(word)

    @pytest.mark.parametrize("query", QUERIES)
    def test_changes_exactly_one_word(self, query: str) -> None:
        for seed in range(20):
            [(before, _)] = _changed_tokens(query, spelled_by_sound(query, random.Random(seed)))
            assert before.isalpha()
            assert len(before) >= 4

    def test_uses_more_than_one_rule(self) -> None:
        outputs = {spelled_by_sound("faucet", random.Random(seed)) for seed in range(30)}
        assert len(outputs) >= 3

    def test_passes_over_words_without_a_rule(self) -> None:
        assert spelled_by_sound("delta windemere", random.Random(0)) == "delta windemeer"

    @pytest.mark.parametrize("query", ["", "pvc 1/2", "dryer"])
    def test_no_applicable_word_is_unchanged(self, query: str) -> None:
        assert spelled_by_sound(query, random.Random(0)) == query


class TestMakeQuerySets:
    def test_sets_are_deterministic_and_independent_of_order(self) -> None:
        queries = {str(i): q for i, q in enumerate(QUERIES)}
        sets = make_query_sets(queries, seed=3)
        assert list(sets) == ["as_written", "typo", "sound"]
        assert sets["as_written"] == queries
        reversed_queries = dict(reversed(list(queries.items())))
        assert make_query_sets(reversed_queries, seed=3)["typo"] == sets["typo"]
        assert make_query_sets({"2": QUERIES[2]}, seed=3)["sound"]["2"] == sets["sound"]["2"]

    def test_seed_matters(self) -> None:
        queries = {str(i): q for i, q in enumerate(QUERIES * 4)}
        assert make_query_sets(queries, seed=0)["typo"] != make_query_sets(queries, seed=1)["typo"]
