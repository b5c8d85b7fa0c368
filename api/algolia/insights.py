"""Algolia Insights events (what ``search-insights`` and InstantSearch's insights middleware
send) as this service's shopper events.

An Insights event names up to 20 products (``objectIDs``); it becomes one event per product,
in the shape ``POST /events`` takes, and goes through the same validation and attribution
(:func:`events.store.ingest`): a ``queryID`` must be one this service answered, for the same
shopper, with that product among its results, or the event is rejected; the query and the
position then come from the service's record, not from the client.

==================================  =============================================
Insights                            event
==================================  =============================================
``eventType`` click                 ``click``
``eventType`` view                  ``view``
``eventType`` conversion            ``purchase``; ``add_to_cart`` with
                                    ``eventSubtype`` addToCart
``objectIDs[i]``                    ``product_id`` (one event each)
``positions[i]``                    ``position`` (replaced by the record's when
                                    there is a ``queryID``)
``queryID`` (or ``objectData[i]``'s) ``query_id``; the record's A/B arms become the
                                    event's ``variants``
``userToken``                       ``session_id``, and ``user_id`` unless
                                    ``authenticatedUserToken`` is given
``authenticatedUserToken``          ``user_id``
``timestamp`` (milliseconds)        ``timestamp`` (seconds)
==================================  =============================================

Events that name no product (``filters`` instead of ``objectIDs``: "Filter Clicked") and
InstantSearch's own usage telemetry (``eventType`` instantsearch) are skipped: the answer counts
them, nothing is stored. ``eventName``, ``index``, ``value``, ``currency`` and the other
commerce fields are not stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.algolia.params import USER_TOKEN

MAX_OBJECT_IDS = 20
"""Products one Insights event may name (Algolia's limit)."""

_TYPES = {"click": "click", "view": "view"}
_CONVERSIONS = {None: "purchase", "purchase": "purchase", "addToCart": "add_to_cart"}
_SKIPPED_TYPES = {"instantsearch": "InstantSearch's usage telemetry is not stored"}

VariantsOf = Callable[[str], Mapping[str, str] | None]
"""``queryID -> the A/B arms the service's record of that answer holds`` (None: unknown)."""


@dataclass(frozen=True, slots=True)
class Converted:
    """A batch of Insights events as shopper events.

    Attributes:
        events: The shopper events, for :func:`events.store.ingest`.
        origin: For each of ``events``, the index of the Insights event it came from.
        skipped: Insights event index -> why nothing of it is stored (not an error).
        rejected: Insights event index -> ``(field, message)`` problems found before the
            events were built (a missing ``userToken``, an unknown ``eventType``...).
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, list[tuple[str, str]]] = field(default_factory=dict)


def _token(event: Mapping[str, Any], name: str, problems: list[tuple[str, str]]) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not USER_TOKEN.fullmatch(value):
        problems.append((name, "must be 1 to 129 letters, digits or _ = / + - . @ :"))
        return None
    return value


def _event_type(event: Mapping[str, Any], problems: list[tuple[str, str]]) -> str | None:
    kind = event.get("eventType")
    if kind == "conversion":
        subtype = event.get("eventSubtype")
        if subtype not in _CONVERSIONS:
            problems.append(("eventSubtype", "must be addToCart or purchase"))
            return None
        return _CONVERSIONS[subtype]
    if kind in _TYPES:
        return _TYPES[kind]
    problems.append(("eventType", f"unknown {str(kind)[:40]!r}; valid: click, conversion, view"))
    return None


def _products(
    event: Mapping[str, Any], problems: list[tuple[str, str]]
) -> list[tuple[str, int | None, str | None]]:
    """``(objectID, position, queryID)`` of each product the event names."""
    ids = event.get("objectIDs")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_OBJECT_IDS:
        problems.append(("objectIDs", f"must list 1 to {MAX_OBJECT_IDS} product ids"))
        return []
    if not all(isinstance(i, str) and i for i in ids):
        problems.append(("objectIDs", "must be non-empty strings"))
        return []
    positions = event.get("positions")
    if positions is not None and (
        not isinstance(positions, list)
        or len(positions) != len(ids)
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in positions)
    ):
        problems.append(("positions", "must list one whole number per objectID"))
        return []
    query_id = event.get("queryID")
    if query_id is not None and not isinstance(query_id, str):
        problems.append(("queryID", "must be a string"))
        return []
    data = event.get("objectData")
    per_object: list[Any] = data if isinstance(data, list) and len(data) == len(ids) else []
    out: list[tuple[str, int | None, str | None]] = []
    for i, object_id in enumerate(ids):
        own = (
            per_object[i].get("queryID") if per_object and isinstance(per_object[i], dict) else None
        )
        out.append(
            (
                object_id,
                positions[i] if positions is not None else None,
                own if isinstance(own, str) else query_id,
            )
        )
    return out


def convert_events(items: Sequence[Any], variants_of: VariantsOf) -> Converted:
    """Insights events as shopper events (see the module docstring for the mapping).

    Args:
        items: The ``events`` array as decoded.
        variants_of: The A/B arms of a recorded answer, by ``queryID``.

    Returns:
        The events, where each came from, and what was skipped or refused.
    """
    out = Converted()
    for index, event in enumerate(items):
        if not isinstance(event, Mapping):
            out.rejected[index] = [("*", "an event must be a JSON object")]
            continue
        kind = event.get("eventType")
        if isinstance(kind, str) and kind in _SKIPPED_TYPES:
            out.skipped[index] = _SKIPPED_TYPES[kind]
            continue
        if "objectIDs" not in event and "filters" in event:
            out.skipped[index] = "events about filters name no product: not stored"
            continue
        problems: list[tuple[str, str]] = []
        our_type = _event_type(event, problems)
        user_token = _token(event, "userToken", problems)
        signed_in = _token(event, "authenticatedUserToken", problems)
        if user_token is None and signed_in is None and not problems:
            problems.append(("userToken", "is required"))
        timestamp = event.get("timestamp")
        if timestamp is not None and (
            not isinstance(timestamp, int | float) or isinstance(timestamp, bool)
        ):
            problems.append(("timestamp", "must be milliseconds since the Unix epoch"))
        products = _products(event, problems)
        if problems or our_type is None:
            out.rejected[index] = problems
            continue
        for object_id, position, query_id in products:
            ours: dict[str, Any] = {
                "type": our_type,
                "product_id": object_id,
                "channel": "web",
                "user_id": signed_in or user_token,
            }
            if user_token is not None:
                ours["session_id"] = user_token
            if position is not None:
                ours["position"] = position
            if timestamp is not None:
                ours["timestamp"] = timestamp / 1000.0
            if query_id is not None:
                ours["query_id"] = query_id
                variants = variants_of(query_id)
                if variants:
                    ours["variants"] = dict(variants)
            out.events.append(ours)
            out.origin.append(index)
    return out
