"""``GET /suggest``: as-you-type query suggestions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import EngineDep

router = APIRouter(tags=["search"])


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
    engine: EngineDep,
    q: Annotated[str, Query(max_length=200, description="What the shopper has typed so far.")] = "",
    k: Annotated[int, Query(ge=1, le=20, description="Most suggestions.")] = 8,
) -> SuggestResponse:
    """Complete the typed text from popular queries and catalogue title phrases, correcting a
    misspelt last word. An empty prefix gives no suggestions."""
    result = engine.suggester.suggest(q, k)
    return SuggestResponse(
        query=q,
        suggestions=[
            SuggestionPublic(text=s.text, kind=s.kind, score=s.score, corrected=s.corrected)
            for s in result.suggestions
        ],
        took_ms=result.took_ms,
    )
