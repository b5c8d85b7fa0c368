"""``GET /search``: ranked, filtered, faceted product search.

A shopper with a ``user_id`` or ``session_id`` is assigned to the running A/B tests
(:func:`api.deps.serve_variants`) and ranked with their variant's weights; the answer's
``variants`` names the arms, for the client to send back on its events.

Every answer to a query is recorded server-side with its ``query_id``
(:func:`record_answer`, :mod:`events.impressions`): analytics count every search, and clicks
sent with the ``query_id`` are attributed to what the service showed. Photo
(:mod:`api.routes.photos`) and voice (:mod:`api.routes.voice`) answers are recorded with the
same function.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from api.deps import EngineDep, SettingsDep, serve_variants
from api.schemas import AdjustmentPublic, SearchResponse
from api.security import SearchKeyDep, merge_filters
from merchandising.experiments import Assignment
from search.engine import SearchEngine
from search.errors import InvalidRequestError
from search.types import Availability, Filters, SearchRequest, SearchResult, SortOrder

# The shopper, as form fields of the upload searches (photo, voice); GET /search takes the same
# as query parameters.
UserIdForm = Annotated[
    str | None, Form(max_length=200, description="The shopper (personalisation and A/B tests).")
]
SessionIdForm = Annotated[
    str | None,
    Form(max_length=200, description="The shopper's session (A/B tests while anonymous)."),
]
ChannelForm = Annotated[
    Literal["web", "app"] | None, Form(description="Where the query comes from.")
]

router = APIRouter(tags=["search"])


@router.get("/search", response_model=SearchResponse, summary="Search the catalogue")
async def search_products(
    http: Request,
    engine: EngineDep,
    settings: SettingsDep,
    key: SearchKeyDep,
    q: Annotated[
        str,
        Query(max_length=1000, description="Query text; empty or blank browses the catalogue."),
    ] = "",
    k: Annotated[int, Query(ge=1, description="Hits per page, at most the service's max_k.")] = 10,
    page: Annotated[int, Query(ge=1, description="1-based page number.")] = 1,
    brand: Annotated[list[str], Query(description="Any of these brands (repeatable).")] = [],  # noqa: B006
    category: Annotated[
        list[str],
        Query(description='Category path or prefix, written "Furniture > Sofas" (repeatable).'),
    ] = [],  # noqa: B006
    attr: Annotated[
        list[str],
        Query(description='Attribute filter "name:value" (repeatable; values of a name OR).'),
    ] = [],  # noqa: B006
    price_min: Annotated[
        float | None, Query(ge=0, allow_inf_nan=False, description="Lowest effective price.")
    ] = None,
    price_max: Annotated[
        float | None, Query(ge=0, allow_inf_nan=False, description="Highest effective price.")
    ] = None,
    currency: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z]{3}$",
            description="Currency (ISO 4217) of price_min, price_max, the price sort and the "
            "price facet; default the shop's base currency. Prices in other currencies are "
            "converted with the shop's exchange rates, or left out of price filters and sorted "
            "last where it has none (the answer's currency and converted say which).",
        ),
    ] = None,
    availability: Annotated[
        list[Availability], Query(description="Any of these stock states (repeatable).")
    ] = [],  # noqa: B006
    sort: Annotated[SortOrder, Query(description="Result order.")] = SortOrder.RELEVANCE,
    facets: Annotated[
        str,
        Query(
            description="Comma-separated facets to count: brand, category, availability, price, "
            "colour (colour families with a swatch), attr:<name>."
        ),
    ] = "",
    explain: Annotated[bool, Query(description="Explain every hit's rank.")] = False,
    as_you_type: Annotated[
        bool, Query(description="Treat the last query word as a prefix (search as you type).")
    ] = True,
    user_id: Annotated[
        str | None,
        Query(max_length=200, description="The shopper (personalisation and A/B tests)."),
    ] = None,
    session_id: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The shopper's session (A/B tests use it while user_id is unknown).",
        ),
    ] = None,
    channel: Annotated[
        Literal["web", "app"] | None, Query(description="Where the query comes from.")
    ] = None,
    colour: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Only products in this colour, closest first: a colour name in English "
            "or Polish (navy, granatowy), a family from the colour facet (blue), or #rrggbb.",
        ),
    ] = None,
) -> SearchResponse:
    """Rank the catalogue's products for a query, with filters, facets, sorting and paging;
    a shopper in A/B tests is ranked with their variant's weights (``variants`` in the answer,
    and an ``experiment`` line in every explanation).

    Raises:
        InvalidRequestError: A parameter is malformed (answered 422 naming it).
    """
    if k > settings.max_k:
        raise InvalidRequestError("k", f"must be at most {settings.max_k}, got {k}")
    request = SearchRequest(
        # A blank query is a browse request; a trailing space in a real query is kept because
        # it tells search-as-you-type that the last word is complete.
        text=q if q.strip() else "",
        k=k,
        page=page,
        filters=merge_filters(
            parse_filters(brand, category, attr, price_min, price_max, availability),
            key.filters if key is not None else None,
        ),
        sort=sort,
        facets=parse_facets(facets, engine.facet_names()),
        explain=explain,
        as_you_type=as_you_type,
        user_id=user_id,
        session_id=session_id,
        channel=channel,
        colour=colour if colour is None or colour.strip() else None,
        currency=currency.upper() if currency else None,
    )
    result, assignment, query_id = await run_search(http, engine, request)
    response = SearchResponse.from_result(result, page=page, k=k, variants=assignment.variants)
    response.query_id = query_id
    if explain and assignment.variants:
        lines = experiment_lines(assignment)
        for hit in response.hits:
            if hit.explanation is not None:
                hit.explanation.adjustments[:0] = lines
    return response


async def run_search(
    http: Request, engine: SearchEngine, request: SearchRequest, *, record: bool = True
) -> tuple[SearchResult, Assignment, str | None]:
    """Search as ``GET /search`` does: the shopper's A/B arms decide the tuning, the engine
    ranks (in the thread pool), and the answer is recorded.

    Shared with the Algolia-compatible routes (:mod:`api.routes.algolia`), so both answer a
    request with the same ranking.

    Args:
        http: The request (its application holds the configuration and the recorder).
        engine: The serving engine.
        request: The search request (filters already narrowed by the key's).
        record: Record the answer (:func:`record_answer`); False for a request that must not
            count in analytics.

    Returns:
        The result, the shopper's assignment and the answer's ``query_id`` (None when not
        recorded).
    """
    tuning, assignment = serve_variants(http, engine, request.user_id, request.session_id)
    # The pipeline is CPU-bound and synchronous: keep it off the event loop.
    result = await run_in_threadpool(engine.search, request, tuning)
    query_id = record_answer(http, request, result, assignment.variants) if record else None
    return result, assignment, query_id


def record_answer(
    http: HTTPConnection,
    request: SearchRequest,
    result: SearchResult,
    variants: Mapping[str, str],
    *,
    without_text: bool = False,
) -> str | None:
    """Record what a search answered (queued, written in the background) and give its id.

    Shared by text, photo and voice search: each passes the request whose ``text`` is the
    query to record (a photo's optional text, the query a voice search searched).

    Args:
        http: The request or WebSocket (its app's ``impressions`` recorder is used).
        request: The search request (query, page, shopper).
        result: The page answered.
        variants: The shopper's A/B test arms.
        without_text: Record it even without query text (a photo alone: recorded with no
            query, so analytics leave it out and its clicks are still attributed).

    Returns:
        The answer's ``query_id``; None with events off or for an answer without query text
        (a browse, a photo alone).
    """
    recorder = getattr(http.app.state, "impressions", None)
    if recorder is None:
        return None
    query_id: str | None = recorder.record(
        request.text,
        [hit.product.id for hit in result.hits],
        first_position=(request.page - 1) * request.k + 1,
        user_id=request.user_id,
        session_id=request.session_id,
        channel=request.channel,
        variants=variants,
        without_text=without_text,
    )
    return query_id


def experiment_lines(assignment: Assignment) -> list[AdjustmentPublic]:
    """The explanation lines of a shopper's A/B test arms (stage ``experiment``).

    Args:
        assignment: The shopper's assignment.

    Returns:
        One line per experiment: the arm, and whether its ranking weights were served.
    """
    return [
        AdjustmentPublic(
            stage="experiment",
            description=f"{experiment}: variant {variant}, "
            + (
                "ranked with its weights"
                if experiment == assignment.decided_by
                else (
                    "same weights as the served variant"
                    if assignment.decided_by is not None
                    else "serving weights"
                )
            ),
        )
        for experiment, variant in assignment.variants.items()
    ]


def parse_filters(
    brand: Sequence[str],
    category: Sequence[str],
    attr: Sequence[str],
    price_min: float | None,
    price_max: float | None,
    availability: Sequence[Availability],
) -> Filters:
    """The hard filters of a search request, from its raw parameters (query or form fields).

    Raises:
        InvalidRequestError: A malformed category or attribute, or ``price_min`` above
            ``price_max`` (answered 422 naming it).
    """
    if price_min is not None and price_max is not None and price_min > price_max:
        raise InvalidRequestError(
            "price_min", f"must not exceed price_max ({price_min:g} > {price_max:g})"
        )
    return Filters(
        brands=tuple(dict.fromkeys(b.strip() for b in brand if b.strip())),
        categories=parse_categories(category),
        attributes=parse_attributes(attr),
        price_min=price_min,
        price_max=price_max,
        availability=tuple(dict.fromkeys(availability)),
    )


def parse_categories(values: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Read ``category`` parameters written ``"Furniture > Sofas"``.

    Args:
        values: The raw parameter values.

    Returns:
        Category paths, root first, without duplicates.

    Raises:
        InvalidRequestError: A path is empty or has an empty level (``"Furniture > "``).
    """
    paths: dict[tuple[str, ...], None] = {}
    for value in values:
        path = tuple(level.strip() for level in value.split(">"))
        if not any(path):
            raise InvalidRequestError("category", "must not be empty")
        if not all(path):
            raise InvalidRequestError(
                "category",
                f'{value!r} has an empty level; write paths like "Furniture > Sofas"',
            )
        paths[path] = None
    return tuple(paths)


def parse_attributes(values: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Read ``attr`` parameters written ``"name:value"``.

    Args:
        values: The raw parameter values.

    Returns:
        Attribute name -> the values asked for (any of them matches).

    Raises:
        InvalidRequestError: A value has no ``:`` or an empty name or value.
    """
    attributes: dict[str, dict[str, None]] = {}
    for value in values:
        name, sep, wanted = value.partition(":")
        name, wanted = name.strip(), wanted.strip()
        if not sep or not name or not wanted:
            raise InvalidRequestError(
                "attr", f'{value!r} is not "name:value" (for example "material:oak")'
            )
        attributes.setdefault(name, {})[wanted] = None
    return {name: tuple(wanted) for name, wanted in attributes.items()}


def parse_facets(value: str, available: Collection[str]) -> tuple[str, ...]:
    """Read the comma-separated ``facets`` parameter.

    Args:
        value: The raw parameter, e.g. ``"brand,attr:material"``.
        available: The facet names the serving snapshot offers.

    Returns:
        The facet names asked for, in order, without duplicates.

    Raises:
        InvalidRequestError: A name is not one of ``available``; the message lists them.
    """
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    unknown = [name for name in names if name not in available]
    if unknown:
        raise InvalidRequestError(
            "facets",
            f"unknown facet {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(available))}",
        )
    return names
