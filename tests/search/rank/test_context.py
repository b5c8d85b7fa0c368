"""What re-rankers share: the ranking context and score normalisation."""

from __future__ import annotations

import pytest

from search.rank.context import RankingContext, normalised_scores
from search.types import Hit, SearchRequest

NOW = 1_750_000_000.0


class TestRankingContext:
    def test_from_request(self) -> None:
        request = SearchRequest(text="x", user_id="u1", session_id="s1", channel="APP")
        context = RankingContext.from_request(request, now=NOW)
        assert (context.user_id, context.session_id, context.channel) == ("u1", "s1", "app")
        assert context.hour == int(NOW // 3600) % 24

    def test_is_frozen(self) -> None:
        context = RankingContext()
        with pytest.raises(AttributeError):
            context.user_id = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [([], []), ([3.0, 2.0, 1.0], [1.0, 0.5, 0.0]), ([2.0, 2.0], [1.0, 0.5])],
)
def test_normalised_scores(scores: list[float], expected: list[float]) -> None:
    hits = [Hit(i, s, "x") for i, s in enumerate(scores)]
    assert list(normalised_scores(hits)) == pytest.approx(expected)
