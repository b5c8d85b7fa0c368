"""``GET /suggest``: as-you-type query suggestions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.deps import EngineDep, visible_suggestions
from api.security import SearchKeyDep
from search.analysis import fold, normalise_query
from search.suggest import Suggestion

router = APIRouter(tags=["search"])

#: Popular queries shown need at least this many (time-decayed) searches.
MIN_SEARCHES = 2.0

_popular_cache: dict[str, object] = {}


def personalise(
    request: Request, suggestions: list[Suggestion], user_id: str | None, session_id: str | None
) -> list[Suggestion]:
    """Suggestions naming a brand or category the shopper favours, or words of products they
    recently viewed or put in the cart, move up (stable otherwise).

    Uses the shopper's profile (user, else session) from the behavioural signals; without
    events or a known shopper the order is unchanged.
    """
    profiles = getattr(request.app.state, "profiles", None)
    if profiles is None or not (user_id or session_id):
        return suggestions
    from search.rank.context import RankingContext

    profile = profiles.snapshot.for_context(RankingContext(user_id=user_id, session_id=session_id))
    if profile is None:
        return suggestions
    tastes = {fold(name): share for name, share in profile.brands.items()}
    for label, share in profile.categories.items():
        leaf = fold(label.split(">")[-1].strip())
        for form in {leaf, leaf[:-1] if leaf.endswith("s") else leaf}:  # "sofas" -> "sofa"
            tastes[form] = max(share, tastes.get(form, 0.0))

    store = request.app.state.engine.store
    for product_id in (*profile.cart, *profile.recently_viewed)[:20]:
        doc = store.doc_of.get(product_id)
        if doc is not None:  # words of what the shopper looked at ("cushion")
            for word in fold(store.products[doc].title).split():
                if len(word) > 2 and word.isalpha():
                    tastes[word] = max(0.5, tastes.get(word, 0.0))

    def affinity(suggestion: Suggestion) -> float:
        text = f" {fold(suggestion.text)} "
        return max((share for name, share in tastes.items() if f" {name} " in text), default=0.0)

    scored = [(affinity(s), i, s) for i, s in enumerate(suggestions)]
    scored.sort(key=lambda t: (-(t[0] >= 0.2), t[1]))
    return [s for _, _, s in scored]


def popular_queries(request: Request) -> dict[str, int] | None:
    """Past queries -> searches, from the behavioural signals (None without events).

    Keyed by :func:`search.analysis.normalise_query`, as suggestions match them; computed once per refresh of
    the signals.
    """
    behaviour = getattr(request.app.state, "behaviour", None)
    if behaviour is None:
        return None
    snapshot = behaviour.snapshot
    if _popular_cache.get("snapshot") is not snapshot:
        _popular_cache["queries"] = {
            normalise_query(q): round(searches)
            for q, searches in snapshot.searched_queries().items()
            if searches >= MIN_SEARCHES
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
    key: SearchKeyDep,
    q: Annotated[str, Query(max_length=200, description="What the shopper has typed so far.")] = "",
    k: Annotated[int, Query(ge=1, le=20, description="Most suggestions.")] = 8,
    user_id: Annotated[str | None, Query(max_length=200, description="The shopper.")] = None,
    session_id: Annotated[
        str | None, Query(max_length=200, description="The shopper's session.")
    ] = None,
) -> SuggestResponse:
    """Complete the typed text from popular queries and catalogue title phrases, correcting a
    misspelt last word. An empty prefix gives no suggestions.

    Under a key with fixed filters, catalogue phrases come only from the titles of products
    the key may see, and popular queries only when each of their words is in such a title.
    """
    suggester, popular = visible_suggestions(engine, key, popular_queries(request))
    result = suggester.suggest(q, k * 2, popular=popular)
    suggestions = personalise(request, list(result.suggestions), user_id, session_id)[:k]
    return SuggestResponse(
        query=q,
        suggestions=[
            SuggestionPublic(text=s.text, kind=s.kind, score=s.score, corrected=s.corrected)
            for s in suggestions
        ],
        took_ms=result.took_ms,
    )
