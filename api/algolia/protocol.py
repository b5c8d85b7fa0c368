"""An Algolia search request as this service's :class:`~search.types.SearchRequest`, and its
:class:`~search.types.SearchResult` as Algolia's answer.

The request keeps everything ``GET /search`` would send for the same query: the text, the page,
the shopper (``userToken`` is both the user and the session, so personalisation and A/B tests
see the shopper ``/search?user_id=<t>&session_id=<t>`` would be) and as-you-type matching; the
filters become one :data:`~search.types.Condition` beside the key's fixed filters (so they only
ever narrow), and a lone colour among them ranks the closest shades first as ``colour=`` does.
The ranking is the engine's: Algolia's ranking parameters are not read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.algolia.errors import AlgoliaParamError, UnknownIndexError
from api.algolia.filters import (
    Field,
    Fields,
    conditions,
    facet_filters_condition,
    filters_condition,
    numeric_filters_condition,
)
from api.algolia.params import PAGINATION_LIMIT, QueryParams
from api.algolia.records import Highlighter, QueryWords, Tags, product_record, retrieve
from search.analysis import Analyzer
from search.index.store import CATEGORY_SEPARATOR
from search.types import (
    MAX_FACET_LIMIT,
    AllOf,
    ColourIs,
    Condition,
    Filters,
    SearchRequest,
    SearchResult,
    SortOrder,
)

REPLICAS: dict[str, SortOrder] = {
    "": SortOrder.RELEVANCE,
    "_price_asc": SortOrder.PRICE_ASC,
    "_price_desc": SortOrder.PRICE_DESC,
}
"""Index name suffixes and the order they sort by (InstantSearch's ``sortBy`` switches
between replicas by name)."""


def served_indices(base: str) -> tuple[str, ...]:
    """The index names the service answers for: ``base`` and its sorted replicas."""
    return tuple(base + suffix for suffix in REPLICAS)


def index_sort(name: str, base: str) -> SortOrder:
    """The order an index name asks for.

    Raises:
        UnknownIndexError: ``name`` is not ``base`` or one of its replicas.
    """
    for suffix, order in REPLICAS.items():
        if name == base + suffix:
            return order
    raise UnknownIndexError(name[:200], served_indices(base))


@dataclass(frozen=True, slots=True)
class FacetPlan:
    """The facets a request asks for, as the engine counts them.

    Attributes:
        requested: Each Algolia facet name with the field it counts.
        engine_names: The engine's facet names to count.
        limit: Values the engine keeps per facet (every depth of the category facet is one
            list, so a ``categories.lvlN`` facet asks for the most).
    """

    requested: tuple[tuple[str, Field], ...]
    engine_names: tuple[str, ...]
    limit: int


_ENGINE_FACET = {
    "brand": "brand",
    "category_level": "category",
    "category": "category",
    "colour": "colour",
    "availability": "availability",
    "price": "price",
}


def plan_facets(params: QueryParams, fields: Fields) -> FacetPlan:
    """The facets of ``params.facets`` (``*``: every attribute of the mapping).

    Raises:
        AlgoliaParamError: a facet the mapping does not have (field ``facets``).
    """
    names: Sequence[str] = params.facets
    if "*" in names:
        names = [n for n in fields.names() if n != "category"]
    requested = tuple((name, fields.resolve("facets", name)) for name in names)
    engine: dict[str, None] = {}
    for _, field in requested:
        engine[_ENGINE_FACET.get(field.kind, f"attr:{field.attribute}")] = None
    deep = any(field.kind in ("category", "category_level") for _, field in requested)
    limit = MAX_FACET_LIMIT if deep else params.max_values_per_facet
    return FacetPlan(requested, tuple(engine), limit)


def split_colour(where: Condition | None) -> tuple[Condition | None, str | None]:
    """Take a lone colour out of a condition's top-level AND, to rank by it.

    A request's ``colour`` both filters and ranks the closest shades first (as ``GET
    /search?colour=`` does); a colour under OR or NOT only filters.

    Returns:
        The rest of the condition (None when nothing is left) and the colour, or the condition
        unchanged and None.
    """
    if isinstance(where, ColourIs):
        return None, where.value
    if isinstance(where, AllOf):
        colours = [c for c in where.conditions if isinstance(c, ColourIs)]
        if len(colours) == 1:
            rest = tuple(c for c in where.conditions if c is not colours[0])
            return (rest[0] if len(rest) == 1 else AllOf(rest)), colours[0].value
    return where, None


def search_request(
    params: QueryParams,
    sort: SortOrder,
    fields: Fields,
    key_filters: Filters,
    plan: FacetPlan,
    max_k: int,
) -> SearchRequest:
    """The engine request an Algolia query asks for.

    Args:
        params: The query's parameters.
        sort: The index's order (:func:`index_sort`).
        fields: The catalogue's filterable attributes.
        key_filters: The API key's fixed filters (already merged the way ``GET /search``
            merges them): they hold whatever the request asks.
        plan: The facets (:func:`plan_facets`).
        max_k: The service's largest page size.

    Raises:
        AlgoliaParamError: a bad filter, or ``hitsPerPage`` above ``max_k``.
    """
    if params.hits_per_page > max_k:
        raise AlgoliaParamError(
            "hitsPerPage", f"must be at most {max_k} on this service, got {params.hits_per_page}"
        )
    where = conditions(
        [
            facet_filters_condition(params.facet_filters, fields),
            numeric_filters_condition(params.numeric_filters, fields),
            filters_condition(params.filters, fields),
        ]
    )
    where, colour = split_colour(where)
    token = params.user_token
    return SearchRequest(
        text=params.query if params.query.strip() else "",
        # hitsPerPage=0 (facet counts only): the engine pages at least one hit, not shown.
        k=max(params.hits_per_page, 1),
        page=params.page + 1 if params.hits_per_page else 1,
        filters=key_filters,
        sort=sort,
        facets=plan.engine_names,
        as_you_type=params.prefix_last,
        user_id=token,
        session_id=token,
        colour=colour,
        where=where,
        facet_limit=plan.limit,
    )


def facets_answer(
    result: SearchResult, plan: FacetPlan, max_values: int
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """The answer's ``facets`` and ``facets_stats``.

    Returns:
        Facet name -> value -> count (``price`` counts no values: its range is in the stats),
        and facet name -> ``{"min", "max", "avg", "sum"}``.
    """
    facets: dict[str, dict[str, int]] = {}
    stats: dict[str, dict[str, float]] = {}
    for name, field in plan.requested:
        if field.kind == "price":
            facets[name] = {}
            price = result.facet_stats.get("price")
            if price is not None:
                stats[name] = {
                    "min": price.min,
                    "max": price.max,
                    "avg": price.avg,
                    "sum": price.sum,
                }
            continue
        engine_name = _ENGINE_FACET.get(field.kind, f"attr:{field.attribute}")
        values = result.facets.get(engine_name, ())
        if field.kind == "category_level":
            values = tuple(v for v in values if v.value.count(CATEGORY_SEPARATOR) == field.level)
        facets[name] = {v.value: v.count for v in values[:max_values]}
    return facets, stats


def hits_answer(
    result: SearchResult, params: QueryParams, analyzer: Analyzer
) -> list[dict[str, Any]]:
    """The answer's ``hits``: records with ``_highlightResult`` (and ``_snippetResult``).

    Args:
        result: The engine's answer.
        params: The query's parameters.
        analyzer: The snapshot's analyzer (for highlighting).
    """
    if params.hits_per_page == 0:
        return []
    words = QueryWords.of(
        params.query, result.corrected_query, analyzer, prefix_last=params.prefix_last
    )
    highlighter = Highlighter(
        words,
        analyzer,
        Tags(params.highlight_pre_tag, params.highlight_post_tag, params.snippet_ellipsis_text),
    )
    hits: list[dict[str, Any]] = []
    for hit in result.hits:
        record = product_record(hit.product, hit.colours)
        out = retrieve(record, params.attributes_to_retrieve)
        highlighted = highlighter.highlight_result(record, params.attributes_to_highlight)
        if highlighted:
            out["_highlightResult"] = highlighted
        if params.attributes_to_snippet:
            out["_snippetResult"] = highlighter.snippet_result(record, params.attributes_to_snippet)
        hits.append(out)
    return hits


def search_answer(
    result: SearchResult,
    params: QueryParams,
    index: str,
    plan: FacetPlan,
    analyzer: Analyzer,
    query_id: str | None,
) -> dict[str, Any]:
    """One query's answer in Algolia's shape.

    Args:
        result: The engine's answer.
        params: The query's parameters.
        index: The index name asked for.
        plan: Its facets.
        analyzer: The snapshot's analyzer.
        query_id: The recorded answer's id (``queryID``, returned with ``clickAnalytics``).
    """
    per_page = params.hits_per_page
    pages = 0
    if per_page:
        pages = min(math.ceil(result.total / per_page), PAGINATION_LIMIT // per_page)
    facets, stats = facets_answer(result, plan, params.max_values_per_facet)
    answer: dict[str, Any] = {
        "hits": hits_answer(result, params, analyzer),
        "nbHits": result.total,
        "page": params.page,
        "nbPages": pages,
        "hitsPerPage": per_page,
        "facets": facets,
        "exhaustiveFacetsCount": True,
        "exhaustiveNbHits": True,
        "exhaustive": {"facetsCount": True, "nbHits": True, "typo": True},
        "query": params.query,
        "params": params.echo,
        "index": index,
        "processingTimeMS": max(0, round(result.took_ms)),
    }
    if stats:
        answer["facets_stats"] = stats
    if params.click_analytics and query_id is not None:
        answer["queryID"] = query_id
    if result.redirect is not None:
        answer["renderingContent"] = {"redirect": {"url": result.redirect}}
    return answer
