"""Search analytics for merchandisers: top queries, zero-result queries, click-through and
conversion per query over a time range.

Queries are grouped by their normalised form (:func:`search.analysis.normalise_query`). Rates are
per *search session*: the distinct (session, query) pairs that searched the query, so a shopper
paging through results or searching twice counts once.

* click-through rate: share of search sessions with at least one click for the query;
* add-to-cart rate and conversion: share with an add-to-cart / a purchase attributed to the
  query (the event's ``query`` field);
* zero-result searches: search events reporting an empty ``results`` list.

Search events are the service's own records of what it answered (every ``GET /search`` with
query text, stored under its ``query_id`` by :mod:`events.impressions`, zero-result searches
sent straight to the API included) and the searches clients report. A client that searches
through this service need not post ``search`` events; one that does should send the answer's
``query_id`` on them, and they are then recognised as the service's record (not counted twice).
Search-as-you-type asks the service at every keystroke: a recorded search that the same
session's next one extends within seconds ("sof" then "sofa") is a keystroke and is not counted
(:func:`without_keystrokes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from events.store import Event, EventStore, EventType, superseded

QueryOrder = Literal["searches", "zero_results", "clicks", "purchases"]


@dataclass(frozen=True, slots=True)
class QueryStats:
    """What shoppers did with one query over a time range.

    Attributes:
        query: The normalised query.
        searches: Search events.
        search_sessions: Distinct sessions that searched it.
        zero_result_searches: Searches that found nothing.
        clicks: Click events attributed to it.
        add_to_carts: Add-to-cart events attributed to it.
        purchases: Purchase events attributed to it.
        click_through_rate: Search sessions with a click / search sessions.
        add_to_cart_rate: Search sessions with an add-to-cart / search sessions.
        conversion_rate: Search sessions with a purchase / search sessions.
    """

    query: str
    searches: int
    search_sessions: int
    zero_result_searches: int
    clicks: int
    add_to_carts: int
    purchases: int
    click_through_rate: float
    add_to_cart_rate: float
    conversion_rate: float

    @property
    def zero_result_rate(self) -> float:
        """Share of searches that found nothing."""
        return self.zero_result_searches / self.searches if self.searches else 0.0


@dataclass
class _Counts:
    searches: int = 0
    zero: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0


def without_keystrokes(events: Iterable[Event]) -> Iterator[Event]:
    """The events less the recorded searches that were only keystrokes on the way to the same
    session's next search (:func:`events.store.superseded`).

    Args:
        events: Events in arrival order.

    Yields:
        The other events (a session's last search is held back until its next one arrives,
        so the order changes; :func:`summarise` does not depend on it).
    """
    held: dict[str, Event] = {}
    for event in events:
        if event.type is not EventType.SEARCH or event.query_id is None:
            yield event
            continue
        earlier = held.pop(event.session_id, None)
        if earlier is not None and not superseded(earlier, event):
            yield earlier
        held[event.session_id] = event
    yield from held.values()


def summarise(events: Iterable[Event]) -> dict[str, QueryStats]:
    """Per-query statistics of a stream of events.

    Args:
        events: Events (any order).

    Returns:
        Normalised query -> statistics, for every query searched or with attributed events.
    """
    counts: dict[str, _Counts] = {}
    sessions: dict[EventType, set[tuple[str, str]]] = {
        t: set()
        for t in (EventType.SEARCH, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)
    }
    for event in events:
        query = event.normalised_query
        if not query or event.type is EventType.VIEW:
            continue
        c = counts.setdefault(query, _Counts())
        sessions[event.type].add((event.session_id, query))
        if event.type is EventType.SEARCH:
            c.searches += 1
            if event.results is not None and not event.results:
                c.zero += 1
        elif event.type is EventType.CLICK:
            c.clicks += 1
        elif event.type is EventType.ADD_TO_CART:
            c.carts += 1
        else:
            c.purchases += 1
    per_query: dict[EventType, dict[str, int]] = {}
    for event_type, pairs in sessions.items():
        tally: dict[str, int] = {}
        for _, query in pairs:
            tally[query] = tally.get(query, 0) + 1
        per_query[event_type] = tally

    def rate(event_type: EventType, query: str, searched: int) -> float:
        if not searched:
            return 0.0
        return min(1.0, per_query[event_type].get(query, 0) / searched)

    out: dict[str, QueryStats] = {}
    for query, c in counts.items():
        searched = per_query[EventType.SEARCH].get(query, 0)
        out[query] = QueryStats(
            query=query,
            searches=c.searches,
            search_sessions=searched,
            zero_result_searches=c.zero,
            clicks=c.clicks,
            add_to_carts=c.carts,
            purchases=c.purchases,
            click_through_rate=rate(EventType.CLICK, query, searched),
            add_to_cart_rate=rate(EventType.ADD_TO_CART, query, searched),
            conversion_rate=rate(EventType.PURCHASE, query, searched),
        )
    return out


def _ordered(stats: Mapping[str, QueryStats], order: QueryOrder, limit: int) -> list[QueryStats]:
    keys = {
        "searches": lambda s: s.searches,
        "zero_results": lambda s: s.zero_result_searches,
        "clicks": lambda s: s.clicks,
        "purchases": lambda s: s.purchases,
    }
    if order not in keys:
        raise ValueError(f"unknown order {order!r}; valid: {', '.join(keys)}")
    key = keys[order]
    rows = [s for s in stats.values() if key(s) > 0]
    rows.sort(key=lambda s: (-key(s), s.query))
    return rows[:limit]


_TYPES = (EventType.SEARCH, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)


def query_stats(
    store: EventStore,
    start: float | None = None,
    end: float | None = None,
    *,
    order: QueryOrder = "searches",
    limit: int = 20,
) -> list[QueryStats]:
    """The ``limit`` queries with the most ``order`` events between ``start`` and ``end``.

    Args:
        store: The event store.
        start: Earliest event time (Unix seconds, inclusive), or None.
        end: Latest event time (exclusive), or None.
        order: ``"searches"`` (top queries), ``"zero_results"`` (zero-result queries),
            ``"clicks"`` or ``"purchases"``.
        limit: Queries returned.

    Returns:
        Statistics, most first (ties by query).

    Raises:
        ValueError: Unknown ``order``, ``limit`` below 1 or ``start`` after ``end``.
    """
    if limit < 1:
        raise ValueError("limit must be 1 or more")
    if start is not None and end is not None and start > end:
        raise ValueError("start must not be after end")
    return _ordered(summarise(without_keystrokes(store.scan(start, end, _TYPES))), order, limit)


def top_queries(
    store: EventStore, start: float | None = None, end: float | None = None, limit: int = 20
) -> list[QueryStats]:
    """The most searched queries (see :func:`query_stats`)."""
    return query_stats(store, start, end, order="searches", limit=limit)


def zero_result_queries(
    store: EventStore, start: float | None = None, end: float | None = None, limit: int = 20
) -> list[QueryStats]:
    """The queries that most often found nothing (see :func:`query_stats`)."""
    return query_stats(store, start, end, order="zero_results", limit=limit)
