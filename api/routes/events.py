"""Shopper events, user erasure and search analytics.

* ``POST /events``: a batch of events. Each event is validated on its own: good events are
  stored (in one durable write) even when others are bad. The answer is **200** when at least
  one event was accepted or recognised as a duplicate, listing every event's status (accepted,
  duplicate, rejected with FastAPI-style error details), and **422** when every event was bad
  (same body, so a client parses one shape). An ``Idempotency-Key`` header makes a retried
  batch safe: an event without its own ``event_id`` is stored as ``<key>:<index>``, and a
  second copy is reported as ``duplicate`` and not counted again. A 2xx means the accepted
  events are durable. An event may carry ``variants``, the A/B test arms the search answer
  reported (``{"ranking-1": "b"}``); the experiment reports count from them
  (:func:`experiment_counts_source`). A request carries at most ``events_max_batch`` events
  (100 by default; **413** beyond, naming the limit). An event needs a ``session_id`` or a
  ``user_id`` (one with only ``user_id`` is filed under session ``user:<user_id>``).
* **Server-side impressions.** Every ``GET /search`` answer has a ``query_id``; the service
  recorded what it showed (:mod:`events.impressions`). A click, add-to-cart or purchase sent
  with that ``query_id`` is attributed to the recorded answer: ``query`` and ``position`` come
  from the record, not from the client. A ``query_id`` that is unknown (never answered here,
  or mistyped) or that belongs to another shopper's search (neither the ``user_id`` nor the
  ``session_id`` the search was made with) is **rejected** with the event's error naming
  ``query_id``; so is a ``product_id`` that was not in that answer. A ``search`` event with a
  known ``query_id`` is acknowledged as a duplicate (the service recorded it already).
* ``DELETE /users/{user_id}``: forget a user's events (and their sessions') and profile, on
  every replica: the store logs the erasure and each replica's refresher drops the user's
  in-memory profiles within one refresh interval.
* When the event store cannot be reached (Redis or PostgreSQL down, SQLite locked beyond its
  timeout, the store closed during shutdown) these routes answer **503** with a
  ``Retry-After`` header (:mod:`api.errors`): nothing of that request was
  stored or erased, and retrying it (with the same ``Idempotency-Key``) is safe.
* ``GET /analytics/queries``: top queries, zero-result queries, click-through and conversion
  per query over a time range, counting every search the service answered (its own records)
  and the searches clients report.

The event store lives on ``app.state.event_store``; it is opened on first use from
``settings.events_db`` (or ``PRODUCTSEARCH_EVENTS_DB``, default ``var/events.sqlite3``). Tests
put their own there or override :func:`get_event_store`. When ``app.state.signals_refresher``
holds a :class:`events.signals.SignalsRefresher`, erasure goes through it so in-memory
profiles are dropped too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.security import require_admin_key, require_search_key
from events.analytics import QueryOrder, query_stats
from events.factory import open_event_store
from events.impressions import ImpressionRecorder
from events.signals import SignalsRefresher
from events.store import (
    BatchOutcome,
    EventStore,
    ServedLookup,
    SQLiteSynchronous,
    experiment_counts,
    ingest,
    served_event_id,
)
from merchandising.experiments import Unit, VariantCounts
from search.errors import InvalidRequestError

router = APIRouter(tags=["events"])

DEFAULT_EVENTS_DB = "var/events.sqlite3"
MAX_BATCH = 100
"""Default of ``settings.events_max_batch``: most events one request may carry (413 beyond).
One request is one client's doing, and a storefront flushes a few events at a time."""
HARD_MAX_BATCH = 1000
"""Most events the body may list at all (the settings cannot raise the cap above this)."""

_open_lock = threading.Lock()


def get_event_store(request: Request) -> EventStore:
    """The event store on ``app.state``, opened on first use.

    Args:
        request: The current request.

    Returns:
        The store.
    """
    return event_store_of(request.app.state)


def event_store_of(state: Any) -> EventStore:
    """The event store on an application's ``state``, opened on first use (see
    :func:`get_event_store`)."""
    store: EventStore | None = getattr(state, "event_store", None)
    if store is not None:
        return store
    with _open_lock:
        store = getattr(state, "event_store", None)
        if store is None:
            settings = getattr(state, "settings", None)
            # The settings own the configuration (they read PRODUCTSEARCH_EVENTS_DB).
            url = getattr(settings, "events_db", None) or DEFAULT_EVENTS_DB
            synchronous: SQLiteSynchronous = getattr(settings, "events_synchronous", "FULL")
            store = open_event_store(str(url), synchronous=synchronous)
            state.event_store = store
    return store


EventStoreDep = Annotated[EventStore, Depends(get_event_store)]


class StoreUnavailableResponse(BaseModel):
    """The event store cannot be reached: nothing of the request was stored or erased."""

    detail: str


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": StoreUnavailableResponse,
        "description": "The event store cannot be reached; nothing was stored or erased. "
        "Retry after the Retry-After header's seconds.",
    }
}


def experiment_counts_source(app: Any) -> Callable[[str], Mapping[str, VariantCounts]] | None:
    """What ``app.state.experiment_counts`` holds: an experiment's per-variant counts from
    the application's event store, counted by the experiment's unit (see
    :func:`events.store.experiment_counts`).

    Args:
        app: The application; its ``state`` holds ``settings``, ``config_store`` and (once
            opened) ``event_store``.

    Returns:
        The counting function, or None when events are off (``events_db = none``).
    """
    settings = getattr(app.state, "settings", None)
    url = str(getattr(settings, "events_db", DEFAULT_EVENTS_DB))
    if url.strip().lower() in ("", "none"):
        return None

    def counts(experiment_id: str) -> Mapping[str, VariantCounts]:
        config = getattr(app.state, "config_store", None)
        experiments = config.current().experiments if config is not None else ()
        experiment = next((e for e in experiments if e.id == experiment_id), None)
        unit: Unit = experiment.unit if experiment is not None else "user"
        return experiment_counts(event_store_of(app.state), experiment_id, unit)

    return counts


class EventBatch(BaseModel):
    """A batch of events; each is validated on its own (see ``POST /events``)."""

    events: list[Any] = Field(
        min_length=1,
        max_length=HARD_MAX_BATCH,
        description="Events: objects with type (search, view, click, add_to_cart, purchase), "
        "session_id, and as needed user_id, product_id, query, position, channel, timestamp "
        "(Unix seconds or ISO 8601), results (a search's product ids shown), variants (the A/B "
        "test arms of the search answer: experiment id -> variant), query_id (the search "
        "answer's id: query and position are then taken from the service's record) and "
        "event_id. At most events_max_batch (100 by default) per request.",
    )


class BatchTooLargeResponse(BaseModel):
    """More events in one request than ``events_max_batch``; nothing was stored."""

    detail: str


class ErrorDetail(BaseModel):
    """One problem with one field, in FastAPI's validation error shape."""

    loc: list[str | int]
    msg: str
    type: str = "value_error"


class EventStatus(BaseModel):
    """What became of one event of a batch."""

    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None = None
    errors: list[ErrorDetail] = []


class EventBatchResponse(BaseModel):
    """Per-event outcome of a batch."""

    accepted: int
    duplicates: int
    rejected: int
    events: list[EventStatus]


def batch_limit(request: Request) -> int:
    """Most events one request may carry: ``settings.events_max_batch``, at most
    :data:`HARD_MAX_BATCH`."""
    settings = getattr(request.app.state, "settings", None)
    return min(int(getattr(settings, "events_max_batch", MAX_BATCH)), HARD_MAX_BATCH)


def batch_too_large(count: int, limit: int) -> str:
    """The 413 message for a batch of ``count`` events over ``limit``."""
    return (
        f"{count} events in one request; at most {limit} are accepted per request "
        "(events_max_batch): send them in smaller batches"
    )


def served_lookup(request: Request, store: EventStore) -> ServedLookup:
    """Where a ``query_id``'s record is read: the service's recorder (recent answers from
    memory) when it writes to ``store``, else ``store`` itself."""
    recorder: ImpressionRecorder | None = getattr(request.app.state, "impressions", None)
    if recorder is not None and recorder.store is store:
        return recorder.lookup
    return lambda query_id: store.get_event(served_event_id(query_id))


def ingest_batch(
    request: Request,
    store: EventStore,
    items: Sequence[Any],
    idempotency_key: str | None = None,
) -> BatchOutcome:
    """Validate and store events as ``POST /events`` does: each on its own, attributed to the
    service's record of the search its ``query_id`` names (see the module docstring).

    Shared with the Insights route (:mod:`api.routes.algolia`).

    Args:
        request: The request (its application holds the recorder).
        store: The event store.
        items: The events as decoded JSON.
        idempotency_key: The batch's ``Idempotency-Key``, or None.

    Returns:
        Per event: accepted, duplicate or rejected with reasons.

    Raises:
        search.errors.EventStoreUnavailableError: the store cannot be reached (503).
    """
    served = served_lookup(request, store)
    return ingest(store, items, idempotency_key=idempotency_key, served=served)


@router.post(
    "/events",
    response_model=EventBatchResponse,
    summary="Record shopper events (batched, idempotent)",
    dependencies=[Depends(require_search_key)],
    responses={
        413: {
            "model": BatchTooLargeResponse,
            "description": "More events than events_max_batch in one request; split it.",
        },
        422: {"model": EventBatchResponse, "description": "Every event was invalid."},
        **_UNAVAILABLE,
    },
)
def post_events(
    request: Request,
    batch: EventBatch,
    store: EventStoreDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=100,
            pattern=r"^[A-Za-z0-9._:-]+$",
            description="Key of this batch: a retry with the same key is not counted twice.",
        ),
    ] = None,
) -> Response:
    """Validate and store a batch of events (see the module docstring for the contract)."""
    limit = batch_limit(request)
    if len(batch.events) > limit:
        return JSONResponse(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            content={"detail": batch_too_large(len(batch.events), limit)},
        )
    outcome = ingest_batch(request, store, batch.events, idempotency_key)
    # Built as plain dicts and encoded once: a 1,000-event batch would otherwise spend more
    # time validating its own response models than storing the events.
    accepted = set(outcome.accepted)
    statuses: list[dict[str, Any]] = []
    for i in range(len(batch.events)):
        errors = outcome.rejected.get(i)
        if errors is None:
            statuses.append(
                {
                    "index": i,
                    "status": "accepted" if i in accepted else "duplicate",
                    "event_id": outcome.event_ids[i],
                    "errors": [],
                }
            )
        else:
            statuses.append(
                {
                    "index": i,
                    "status": "rejected",
                    "event_id": None,
                    "errors": [
                        {
                            "loc": ["body", "events", i, e.field],
                            "msg": e.message,
                            "type": "value_error",
                        }
                        for e in errors
                    ],
                }
            )
    body = {
        "accepted": len(outcome.accepted),
        "duplicates": len(outcome.duplicates),
        "rejected": len(outcome.rejected),
        "events": statuses,
    }
    ok = outcome.accepted or outcome.duplicates
    code = status.HTTP_200_OK if ok else status.HTTP_422_UNPROCESSABLE_CONTENT
    return Response(orjson.dumps(body), status_code=code, media_type="application/json")


class ForgetResponse(BaseModel):
    """Outcome of erasing a user."""

    user_id: str
    events_deleted: int


@router.delete(
    "/users/{user_id}",
    response_model=ForgetResponse,
    summary="Forget a user's events and profile (GDPR erasure)",
    # Shopper data: an admin key, also in open mode (a storefront's search key is public).
    dependencies=[Depends(require_admin_key)],
    responses={**_UNAVAILABLE},
)
def forget_user(
    request: Request,
    store: EventStoreDep,
    user_id: Annotated[str, Path(min_length=1, max_length=200)],
) -> ForgetResponse:
    """Delete the user's events, their sessions' events and their profiles (on every replica
    within one refresh interval). Idempotent: an unknown user answers 200 with 0 events
    deleted (the erasure is still logged: profiles may outlive events purged by retention)."""
    refresher: SignalsRefresher | None = getattr(request.app.state, "signals_refresher", None)
    if refresher is not None and refresher.store is store:
        deleted = refresher.forget_user(user_id)
    else:
        deleted = store.forget_user(user_id)
    return ForgetResponse(user_id=user_id, events_deleted=deleted)


class QueryStatsPublic(BaseModel):
    """What shoppers did with one query over the range."""

    query: str
    searches: int
    search_sessions: int
    zero_result_searches: int
    zero_result_rate: float
    clicks: int
    add_to_carts: int
    purchases: int
    click_through_rate: float
    add_to_cart_rate: float
    conversion_rate: float


class QueryAnalyticsResponse(BaseModel):
    """Per-query statistics, most first."""

    start: datetime | None
    end: datetime | None
    order: str
    queries: list[QueryStatsPublic]


@router.get(
    "/analytics/queries",
    response_model=QueryAnalyticsResponse,
    summary="Top and zero-result queries with click-through and conversion",
    # Every shopper's queries: an admin key, also in open mode.
    dependencies=[Depends(require_admin_key)],
)
def analytics_queries(
    request: Request,
    store: EventStoreDep,
    start: Annotated[
        datetime | None, Query(description="From (ISO 8601 or Unix seconds), inclusive.")
    ] = None,
    end: Annotated[
        datetime | None, Query(description="Until (ISO 8601 or Unix seconds), exclusive.")
    ] = None,
    order: Annotated[
        QueryOrder,
        Query(description="searches (top queries), zero_results, clicks or purchases."),
    ] = "searches",
    limit: Annotated[int, Query(ge=1, le=1000, description="Queries returned.")] = 20,
) -> QueryAnalyticsResponse:
    """Queries of the range, ordered by ``order``.

    Raises:
        InvalidRequestError: ``start`` is after ``end`` (422).
    """
    if start is not None and end is not None and start > end:
        raise InvalidRequestError("start", "must not be after end")
    recorder: ImpressionRecorder | None = getattr(request.app.state, "impressions", None)
    if recorder is not None and recorder.store is store:
        recorder.flush()  # the searches answered until now, not only those written already
    rows = query_stats(
        store,
        start.timestamp() if start is not None else None,
        end.timestamp() if end is not None else None,
        order=order,
        limit=limit,
    )
    return QueryAnalyticsResponse(
        start=start,
        end=end,
        order=order,
        queries=[
            QueryStatsPublic(
                query=r.query,
                searches=r.searches,
                search_sessions=r.search_sessions,
                zero_result_searches=r.zero_result_searches,
                zero_result_rate=r.zero_result_rate,
                clicks=r.clicks,
                add_to_carts=r.add_to_carts,
                purchases=r.purchases,
                click_through_rate=r.click_through_rate,
                add_to_cart_rate=r.add_to_cart_rate,
                conversion_rate=r.conversion_rate,
            )
            for r in rows
        ],
    )
