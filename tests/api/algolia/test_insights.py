"""Insights events as shopper events: the mapping, and what is skipped or refused before the
events meet the store's own validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from api.algolia.insights import MAX_OBJECT_IDS, convert_events


def no_variants(query_id: str) -> Mapping[str, str] | None:
    return None


def click(**fields: Any) -> dict[str, Any]:
    return {
        "eventType": "click",
        "eventName": "Hit Clicked",
        "index": "products",
        "userToken": "anonymous-1",
        "objectIDs": ["SOFA-1"],
        **fields,
    }


class TestMapping:
    def test_a_click_after_search(self) -> None:
        seen: list[str] = []

        def variants(query_id: str) -> Mapping[str, str] | None:
            seen.append(query_id)
            return {"e1": "b"}

        out = convert_events(
            [
                click(
                    objectIDs=["A", "B"],
                    positions=[3, 4],
                    queryID="q" * 32,
                    timestamp=1_700_000_000_000,
                )
            ],
            variants,
        )
        assert out.events == [
            {
                "type": "click",
                "product_id": product,
                "channel": "web",
                "user_id": "anonymous-1",
                "session_id": "anonymous-1",
                "position": position,
                "timestamp": 1_700_000_000.0,
                "query_id": "q" * 32,
                "variants": {"e1": "b"},
            }
            for product, position in (("A", 3), ("B", 4))
        ]
        assert out.origin == [0, 0] and seen == ["q" * 32, "q" * 32]
        assert not out.rejected and not out.skipped

    @pytest.mark.parametrize(
        ("event", "kind"),
        [
            ({"eventType": "view"}, "view"),
            ({"eventType": "conversion"}, "purchase"),
            ({"eventType": "conversion", "eventSubtype": "purchase"}, "purchase"),
            ({"eventType": "conversion", "eventSubtype": "addToCart"}, "add_to_cart"),
        ],
    )
    def test_types(self, event: dict[str, Any], kind: str) -> None:
        out = convert_events([click(**event)], no_variants)
        assert out.events[0]["type"] == kind
        assert "query_id" not in out.events[0] and "position" not in out.events[0]

    def test_a_signed_in_shopper(self) -> None:
        out = convert_events([click(authenticatedUserToken="user-42")], no_variants)
        assert out.events[0]["user_id"] == "user-42"
        assert out.events[0]["session_id"] == "anonymous-1"

    def test_a_conversions_per_object_query_id(self) -> None:
        event = click(
            eventType="conversion",
            objectIDs=["A", "B"],
            objectData=[{"queryID": "a" * 32}, {"price": 3}],
            queryID="b" * 32,
        )
        out = convert_events([event], no_variants)
        assert [e["query_id"] for e in out.events] == ["a" * 32, "b" * 32]


class TestSkippedAndRefused:
    def test_filter_events_and_telemetry_are_skipped(self) -> None:
        events = [
            {"eventType": "click", "filters": ["brand%3AX"], "userToken": "u", "index": "p"},
            {"eventType": "instantsearch", "eventName": "__start__", "widgets": []},
        ]
        out = convert_events(events, no_variants)
        assert out.events == [] and set(out.skipped) == {0, 1}

    @pytest.mark.parametrize(
        ("event", "field"),
        [
            (click(eventType="hover"), "eventType"),
            (click(eventType="conversion", eventSubtype="wishlist"), "eventSubtype"),
            (click(userToken=None), "userToken"),
            (click(userToken="a b"), "userToken"),
            (click(objectIDs=[]), "objectIDs"),
            (click(objectIDs=["A"] * (MAX_OBJECT_IDS + 1)), "objectIDs"),
            (click(objectIDs=[1]), "objectIDs"),
            (click(objectIDs="A"), "objectIDs"),
            (click(positions=[1, 2]), "positions"),
            (click(positions=["1"]), "positions"),
            (click(queryID=7), "queryID"),
            (click(timestamp="yesterday"), "timestamp"),
        ],
    )
    def test_refused_with_the_field(self, event: dict[str, Any], field: str) -> None:
        out = convert_events([click(), event], no_variants)
        assert len(out.events) == 1 and out.origin == [0]
        assert field in {f for f, _ in out.rejected[1]}

    def test_not_an_object(self) -> None:
        assert convert_events(["click"], no_variants).rejected == {
            0: [("*", "an event must be a JSON object")]
        }
