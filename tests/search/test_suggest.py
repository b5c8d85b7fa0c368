"""As-you-type suggestions from catalogue titles and popular queries."""

from __future__ import annotations

import pytest

from search.analysis import Analyzer
from search.index.vocabulary import VocabularyBuilder
from search.suggest import Suggester

TITLES = [
    "Navy linen shirt",
    "Navy linen shirt, slim",
    "Navy poplin shirt",
    "White linen shirt",
    "Oak dining table",
    "Oak dining chair",
    "Oak dining chair with arms",
    "Krzesło dębowe",
    "Krzesło tapicerowane",
    "Sofa narożna",
]


@pytest.fixture(scope="module")
def suggester() -> Suggester:
    analyzer = Analyzer(("en", "pl"))
    builder = VocabularyBuilder(analyzer)
    builder.add(TITLES)
    vocabulary = builder.build(lambda term: 0)
    return Suggester.from_titles(TITLES, vocabulary, analyzer)


def texts(suggester: Suggester, typed: str, **kwargs: object) -> list[str]:
    return [s.text for s in suggester.suggest(typed, **kwargs).suggestions]  # type: ignore[arg-type]


class TestSuggester:
    def test_completes_a_word_most_frequent_first(self, suggester: Suggester) -> None:
        assert texts(suggester, "na")[0] == "navy"
        assert "navy linen" in texts(suggester, "na")

    def test_completes_a_title_phrase(self, suggester: Suggester) -> None:
        assert texts(suggester, "oak din")[0] == "oak dining"
        assert texts(suggester, "navy li") == ["navy linen"]

    def test_keeps_earlier_words(self, suggester: Suggester) -> None:
        assert texts(suggester, "oak dining ch") == ["oak dining chair"]

    def test_corrects_a_misspelt_last_word(self, suggester: Suggester) -> None:
        result = suggester.suggest("navy shrt")
        assert [s.text for s in result.suggestions] == ["navy shirt"]
        assert result.suggestions[0].corrected

    def test_polish_with_and_without_diacritics(self, suggester: Suggester) -> None:
        assert "krzesło" in texts(suggester, "krzes")
        assert "sofa narożna" in texts(suggester, "sofa naroz")

    def test_popular_queries_come_first(self, suggester: Suggester) -> None:
        popular = {"navy shirt men": 40, "navy blazer": 12, "oak table": 9}
        found = suggester.suggest("navy", popular=popular).suggestions
        assert [s.text for s in found[:2]] == ["navy shirt men", "navy blazer"]
        assert {s.kind for s in found[:2]} == {"query"}
        assert found[2].kind == "catalogue"

    @pytest.mark.parametrize("typed", ["", "   ", "zzzz", "12"])
    def test_nothing_to_suggest(self, suggester: Suggester, typed: str) -> None:
        assert texts(suggester, typed) == []

    def test_k_limits(self, suggester: Suggester) -> None:
        assert len(texts(suggester, "n", k=1)) == 1


def test_punctuation_typed_still_completes_a_popular_query(suggester: Suggester) -> None:
    """Popular queries are keyed by normalise_query; what the shopper types is keyed the same
    way, so "sofa, g" completes "sofa grey"."""
    assert texts(suggester, "sofa, g", popular={"sofa grey": 12})[:1] == ["sofa grey"]
