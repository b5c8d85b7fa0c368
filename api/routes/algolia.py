"""Algolia-compatible routes: storefronts built on InstantSearch and the ``algoliasearch`` lite
client search here with a configuration change (``docs/instantsearch.md``).

* ``POST /1/indexes/*/queries``: several queries in one request (what InstantSearch sends).
* ``POST /1/indexes/{index}/query`` and ``GET /1/indexes/{index}``: one query.
* ``POST /1/events``: Insights events (``search-insights``, InstantSearch's insights
  middleware), stored like ``POST /events`` stores events.

Each query runs the pipeline ``GET /search`` runs, through the same function
(:func:`api.routes.search.run_search`): A/B arms, merchandising rules, behaviour and
personalisation apply, and the answer is recorded with its ``query_id`` (Algolia's
``queryID``). The protocol itself (parameters, filters, records, highlighting) is
:mod:`api.algolia`.

Each query of a multi-query request counts against the key's and the client's rate limits
as one ``GET /search`` would.

Keys: a search key in ``X-Algolia-API-Key`` or the ``x-algolia-api-key`` query parameter
(also ``Authorization: Bearer`` or ``X-API-Key``); an admin key is refused (403): the browser
sees the key. The application id (``X-Algolia-Application-Id``) is accepted and not checked.
Every error answers in Algolia's shape, ``{"message": ..., "status": ...}``, with the status
:mod:`api.errors` gives it (422 becomes 400, as Algolia answers a bad parameter).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from api.algolia.errors import AlgoliaParamError
from api.algolia.filters import Fields
from api.algolia.insights import Converted, convert_events
from api.algolia.params import merged_fields, parse_query_params
from api.algolia.protocol import index_sort, plan_facets, search_answer, search_request
from api.deps import EngineDep, SettingsDep
from api.errors import request_error_answer
from api.routes.events import (
    HARD_MAX_BATCH,
    EventStoreDep,
    batch_limit,
    batch_too_large,
    ingest_batch,
    served_lookup,
)
from api.routes.search import run_search
from api.security import ApiKey, StorefrontKeyDep, charge_searches, merge_filters
from events.store import BatchOutcome, EventStore
from search.engine import SearchEngine
from search.errors import SearchServiceError
from search.index.store import CATEGORY_SEPARATOR, ProductStore
from search.types import Filters

MAX_SEARCH_BODY = 256 * 1024
"""Largest body of a search request (a few dozen queries with their filters)."""
MAX_EVENTS_BODY = 1024 * 1024
"""Largest body of an Insights request."""
MAX_QUERIES = 32
"""Most queries one multi-query request may carry (InstantSearch sends one per refined
disjunctive facet and hierarchical level, plus one)."""

_REQUEST_FIELDS = frozenset({"indexName", "type"})
_QUERY_BODY = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "Search parameters as fields, or a URL-encoded `params` string.",
                "additionalProperties": True,
            }
        }
    }
}


def algolia_error(code: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error in Algolia's body shape, ``{"message": ..., "status": ...}``."""
    return Response(
        orjson.dumps({"message": message, "status": code}),
        status_code=code,
        media_type="application/json",
        headers=dict(headers) if headers else None,
    )


class AlgoliaRoute(APIRoute):
    """A route whose every error, its dependencies' included (401, 403, 429), answers in
    Algolia's shape with the status :mod:`api.errors` gives it (422 as 400)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, wrapped to answer errors in Algolia's shape."""
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handle(request)
            except HTTPException as exc:
                return algolia_error(exc.status_code, str(exc.detail), exc.headers)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                    for e in exc.errors()
                )
                return algolia_error(status.HTTP_400_BAD_REQUEST, problems)
            except SearchServiceError as exc:
                mapped = request_error_answer(request, exc)
                if mapped is None:
                    raise
                code = mapped.status
                if code == status.HTTP_422_UNPROCESSABLE_CONTENT:
                    code = status.HTTP_400_BAD_REQUEST
                return algolia_error(code, mapped.message, mapped.headers)

        return answer


router = APIRouter(tags=["algolia"], route_class=AlgoliaRoute)

_FIELDS: weakref.WeakKeyDictionary[ProductStore, Fields] = weakref.WeakKeyDictionary()


def catalogue_fields(engine: SearchEngine) -> Fields:
    """The attributes the serving snapshot offers to filters and facets (once per snapshot)."""
    store = engine.store
    fields = _FIELDS.get(store)
    if fields is None:
        depth = max(
            (label.count(CATEGORY_SEPARATOR) + 1 for f, label in store.labels if f == "category"),
            default=0,
        )
        fields = Fields(frozenset(store.attribute_names), depth)
        _FIELDS[store] = fields
    return fields


async def _json_body(request: Request, limit: int) -> Any:
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"request body too large: the limit is {limit:,} bytes",
        )
    if not body.strip():
        return {}
    try:
        # Whatever the content type: the browser clients send JSON as text/plain (no preflight).
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AlgoliaParamError("body", f"is not valid JSON: {exc}") from None


async def _answer(
    http: Request,
    engine: SearchEngine,
    max_k: int,
    base_index: str,
    key: ApiKey | None,
    index: object,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """One query's answer: parse, search as ``GET /search`` does, answer in Algolia's shape."""
    if not isinstance(index, str) or not index:
        raise AlgoliaParamError("indexName", "is required (the index to search)")
    sort = index_sort(index, base_index)
    params = parse_query_params(fields)
    catalogue = catalogue_fields(engine)
    plan = plan_facets(params, catalogue)
    request = search_request(
        params,
        sort,
        catalogue,
        merge_filters(Filters(), key.filters if key is not None else None),
        plan,
        max_k,
    )
    # A facets-only query (hitsPerPage 0, InstantSearch's per-facet queries) shows no hit:
    # nothing to record as shown.
    record = params.analytics and params.hits_per_page > 0
    result, _, query_id = await run_search(http, engine, request, record=record)
    return search_answer(result, params, index, plan, engine.analyzer, query_id)


def _json(content: Any, code: int = status.HTTP_200_OK) -> Response:
    return Response(orjson.dumps(content), status_code=code, media_type="application/json")


@router.post(
    "/1/indexes/*/queries",
    summary="Algolia multi-query search (InstantSearch)",
    openapi_extra={"requestBody": _QUERY_BODY | {"description": '`{"requests": [...]}`'}},
)
async def multiple_queries(
    http: Request, engine: EngineDep, settings: SettingsDep, key: StorefrontKeyDep
) -> Response:
    """Answer ``{"requests": [{"indexName": ..., "params": ...}, ...]}`` with
    ``{"results": [...]}`` in the same order.

    Raises:
        AlgoliaParamError: a malformed body or query (400 naming it, ``requests[i].<param>``).
    """
    body = await _json_body(http, MAX_SEARCH_BODY)
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise AlgoliaParamError("requests", 'the body must be {"requests": [...]}')
    unknown = sorted(str(k) for k in body if k not in ("requests", "strategy"))
    if unknown:
        raise AlgoliaParamError(unknown[0], "is not supported; the body takes requests, strategy")
    if body.get("strategy", "none") != "none":
        raise AlgoliaParamError("strategy", "only 'none' is supported (every query is answered)")
    queries: list[Any] = body["requests"]
    if not 1 <= len(queries) <= MAX_QUERIES:
        raise AlgoliaParamError("requests", f"must hold 1 to {MAX_QUERIES} queries")
    # Each query is a search: the rate limits count it as GET /search would.
    charge_searches(http, key, len(queries))
    results = []
    for i, query in enumerate(queries):
        if not isinstance(query, dict):
            raise AlgoliaParamError(f"requests[{i}]", "must be an object")
        try:
            if query.get("type", "default") != "default":
                raise AlgoliaParamError(
                    "type", "only 'default' is supported (facet value search is not)"
                )
            fields = merged_fields(query, ignore=_REQUEST_FIELDS)
            results.append(
                await _answer(
                    http,
                    engine,
                    settings.max_k,
                    settings.algolia_index,
                    key,
                    query.get("indexName"),
                    fields,
                )
            )
        except AlgoliaParamError as exc:
            raise AlgoliaParamError(f"requests[{i}].{exc.field}", exc.message) from None
    return _json({"results": results})


IndexName = Annotated[str, Path(max_length=200, description="The index: the configured name.")]


@router.post(
    "/1/indexes/{index_name}/query",
    summary="Algolia single-index search",
    openapi_extra={"requestBody": _QUERY_BODY},
)
async def query_index(
    http: Request,
    index_name: IndexName,
    engine: EngineDep,
    settings: SettingsDep,
    key: StorefrontKeyDep,
) -> Response:
    """Answer one query whose parameters are the body's fields or its ``params`` string.

    Raises:
        AlgoliaParamError: a malformed body or parameter (400 naming it).
        UnknownIndexError: an index this service does not answer for (404).
    """
    body = await _json_body(http, MAX_SEARCH_BODY)
    if not isinstance(body, dict):
        raise AlgoliaParamError("body", "must be a JSON object of search parameters")
    fields = merged_fields(body, ignore=frozenset())
    return _json(
        await _answer(http, engine, settings.max_k, settings.algolia_index, key, index_name, fields)
    )


@router.get("/1/indexes/{index_name}", summary="Algolia single-index search (GET)")
async def browse_index(
    http: Request,
    index_name: IndexName,
    engine: EngineDep,
    settings: SettingsDep,
    key: StorefrontKeyDep,
) -> Response:
    """Answer one query whose parameters are the query string's (``?query=sofa&page=1``);
    the client's own ``x-algolia-*`` parameters (key, application id, agent) are not search
    parameters.

    Raises:
        AlgoliaParamError: a malformed parameter (400 naming it).
        UnknownIndexError: an index this service does not answer for (404).
    """
    raw = {
        name: value
        for name, value in http.query_params.items()
        if not name.lower().startswith("x-algolia-")
    }
    fields = merged_fields(raw, ignore=frozenset())
    return _json(
        await _answer(http, engine, settings.max_k, settings.algolia_index, key, index_name, fields)
    )


def _store_events(
    http: Request, store: EventStore, items: Sequence[Any]
) -> tuple[Converted, BatchOutcome | None, int]:
    """Convert and store (in the thread pool: the store's reads and writes block)."""
    lookup = served_lookup(http, store)

    def variants_of(query_id: str) -> Mapping[str, str] | None:
        served = lookup(query_id)
        return served.variants if served is not None else None

    converted = convert_events(items, variants_of)
    limit = batch_limit(http)
    if len(converted.events) > limit:
        return converted, None, limit
    outcome = ingest_batch(http, store, converted.events) if converted.events else BatchOutcome()
    return converted, outcome, limit


@router.post(
    "/1/events",
    summary="Algolia Insights events (search-insights, InstantSearch)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": '`{"events": [{"eventType": "click", ...}]}`',
                        "additionalProperties": True,
                    }
                }
            }
        }
    },
)
async def insights_events(http: Request, store: EventStoreDep, key: StorefrontKeyDep) -> Response:
    """Store Insights events as shopper events (:mod:`api.algolia.insights`), validated and
    attributed as ``POST /events`` does.

    Answers 200 ``{"status": 200, "message": "OK", ...}`` when anything was stored (or all was
    skipped), 422 when every event was refused, each event's outcome listed in ``events``.

    Raises:
        AlgoliaParamError: the body is not ``{"events": [...]}`` (400).
        EventStoreUnavailableError: the store cannot be reached (503; nothing stored).
    """
    body = await _json_body(http, MAX_EVENTS_BODY)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise AlgoliaParamError("events", 'the body must be {"events": [...]}')
    items: list[Any] = body["events"]
    if not 1 <= len(items) <= HARD_MAX_BATCH:
        raise AlgoliaParamError("events", f"must hold 1 to {HARD_MAX_BATCH} events")
    converted, outcome, limit = await run_in_threadpool(_store_events, http, store, items)
    if outcome is None:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, batch_too_large(len(converted.events), limit)
        )
    return _insights_answer(len(items), converted, outcome)


def _insights_answer(count: int, converted: Converted, outcome: BatchOutcome) -> Response:
    stored = {*outcome.accepted, *outcome.duplicates}
    per_event: list[dict[str, Any]] = []
    totals = {"accepted": 0, "rejected": 0, "skipped": 0, "partial": 0}
    first_error: str | None = None
    mine: dict[int, list[int]] = {}
    for ours, origin in enumerate(converted.origin):
        mine.setdefault(origin, []).append(ours)
    for index in range(count):
        entry: dict[str, Any] = {"index": index}
        if index in converted.skipped:
            entry |= {"status": "skipped", "reason": converted.skipped[index]}
        else:
            errors = [
                {"field": field, "message": message}
                for field, message in converted.rejected.get(index, [])
            ]
            kept = 0
            for j, ours in enumerate(mine.get(index, [])):
                kept += ours in stored
                for problem in outcome.rejected.get(ours, ()):
                    errors.append(
                        {"field": f"objectIDs[{j}].{problem.field}", "message": problem.message}
                    )
            entry["status"] = "accepted" if not errors else "partial" if kept else "rejected"
            entry["stored"] = kept
            if errors:
                entry["errors"] = errors
                if first_error is None:
                    first_error = f"event {index}: {errors[0]['field']}: {errors[0]['message']}"
        totals[entry["status"]] += 1
        per_event.append(entry)
    ok = totals["accepted"] or totals["partial"] or not totals["rejected"]
    code = status.HTTP_200_OK if ok else status.HTTP_422_UNPROCESSABLE_CONTENT
    message = "OK" if ok else first_error or "every event was refused"
    return _json({"status": code, "message": message, **totals, "events": per_event}, code)
