"""``GET /suggest``: as-you-type query suggestions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.deps import EngineDep
from search.analysis import fold

router = APIRouter(tags=["search"])

#: Popular queries shown need at least this many (time-decayed) searches.
MIN_SEARCHES = 2.0

_popular_cache: dict[str, object] = {}


def popular_queries(request: Request) -> dict[str, int] | None:
    """Past queries -> searches, from the behavioural signals (None without events).

    Folded and whitespace-normalised, as suggestions match them; computed once per refresh of
    the signals.
    """
    behaviour = getattr(request.app.state, "behaviour", None)
    if behaviour is None:
        return None
    snapshot = behaviour.snapshot
    if _popular_cache.get("snapshot") is not snapshot:
        _popular_cache["queries"] = {
            " ".join(fold(q).split()): round(signals.searches)
            for q, signals in snapshot.queries.items()
            if signals.searches >= MIN_SEARCHES
        }
        _popular_cache["snapshot"] = snapshot
    queries: dict[str, int] = _popular_cache["queries"]  # type: ignore[assignment]
    return queries


class SuggestionPublic(BaseModel):
    """One suggestion."""

    text: str = Field(description="What to put in the search box.")
    kind: Literal["query", "catalogue"] = Field(
        description="query: what other shoppers searched; catalogue: words of product titles."
    )
    score: float = Field(description="Searches (query) or titles holding it (catalogue).")
    corrected: bool = Field(description="The typed text was corrected to find it.")


class SuggestResponse(BaseModel):
    """Suggestions for a prefix."""

    query: str
    suggestions: list[SuggestionPublic]
    took_ms: float


@router.get(
    "/suggest", response_model=SuggestResponse, summary="Suggest queries as the shopper types"
)
def suggest(
    request: Request,
    engine: EngineDep,
    q: Annotated[str, Query(max_length=200, description="What the shopper has typed so far.")] = "",
    k: Annotated[int, Query(ge=1, le=20, description="Most suggestions.")] = 8,
) -> SuggestResponse:
    """Complete the typed text from popular queries and catalogue title phrases, correcting a
    misspelt last word. An empty prefix gives no suggestions."""
    result = engine.suggester.suggest(q, k, popular=popular_queries(request))
    return SuggestResponse(
        query=q,
        suggestions=[
            SuggestionPublic(text=s.text, kind=s.kind, score=s.score, corrected=s.corrected)
            for s in result.suggestions
        ],
        took_ms=result.took_ms,
    )
