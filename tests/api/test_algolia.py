"""The Algolia-compatible routes through the application: keys as Algolia clients send them,
admin keys refused, a key's fixed filters holding, the same hits as ``GET /search`` (typos,
paging, sorting, filters, colours, merchandising rules, A/B arms), Insights events landing in
the event store with /events' attribution rules, errors in Algolia's shape, and CORS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from api.app import create_app
from api.routes.algolia import MAX_QUERIES, MAX_SEARCH_BODY
from api.security import KeyStore, redact
from api.settings import Settings
from search.types import Filters
from tests.api import PRODUCTS_BY_ID, build_snapshot
from tests.api.test_experiments import EXPERIMENT, shoppers_in

ORIGIN = "https://shop.example"
QUERIES = "/1/indexes/*/queries"


@dataclass
class Service:
    """The application with keys required, and one token per kind of key."""

    app: FastAPI
    client: TestClient
    search: str
    filtered: str
    admin: str
    limited: str
    trio: str

    def queries(
        self,
        *requests: dict[str, Any],
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A multi-query request as the browser lite client sends it: JSON as text/plain,
        the key in the query string."""
        body = json.dumps({"requests": list(requests)})
        params = {
            "x-algolia-api-key": token or self.search,
            "x-algolia-application-id": "SHOP",
            "x-algolia-agent": "Algolia for JavaScript (5.0.0); Lite (5.0.0); Browser",
        }
        return self.client.post(
            QUERIES,
            content=body,
            params=params,
            headers={"content-type": "text/plain", **(headers or {})},
        )

    def algolia(self, *requests: dict[str, Any], token: str | None = None) -> list[dict[str, Any]]:
        response = self.queries(*requests, token=token)
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def hits(self, token: str | None = None, **params: Any) -> list[str]:
        (result,) = self.algolia({"indexName": "products", **params}, token=token)
        return [hit["objectID"] for hit in result["hits"]]

    def ours(self, token: str | None = None, **params: Any) -> list[str]:
        response = self.client.get(
            "/search", params=params, headers={"X-API-Key": token or self.search}
        )
        assert response.status_code == 200, response.text
        return [hit["id"] for hit in response.json()["hits"]]

    def events(self, events: list[dict[str, Any]], token: str | None = None) -> Response:
        """Insights events as ``search-insights`` sends them (sendBeacon: text/plain, the key
        in capitalised query parameters)."""
        return self.client.post(
            "/1/events",
            params={"X-Algolia-Application-Id": "SHOP", "X-Algolia-API-Key": token or self.search},
            content=json.dumps({"events": events}),
            headers={"content-type": "text/plain;charset=UTF-8"},
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    work = tmp_path_factory.mktemp("algolia")
    keys = KeyStore(work / "keys.sqlite3")
    plenty: dict[str, Any] = {"rate_per_minute": 100_000, "burst": 10_000}
    _, search = keys.create("storefront", "search", **plenty)
    _, filtered = keys.create(
        "storefront-nordhem", "search", filters=Filters(brands=("Nordhem",)), **plenty
    )
    _, admin = keys.create("ops", "admin", **plenty)
    _, limited = keys.create("tiny", "search", rate_per_minute=1, burst=2)
    _, trio = keys.create("three-searches", "search", rate_per_minute=1, burst=3)
    keys.close()
    settings = Settings(
        index_dir=build_snapshot(work),
        text_embedder="none",
        events_db=str(work / "events.sqlite3"),
        keys_db=work / "keys.sqlite3",
        merch_db=work / "merch.sqlite3",
        open_mode=False,
        # Rankings compared between two calls must not move with a refresh in between.
        behaviour_refresh_s=3600,
        cors_origins=[ORIGIN],
        client_rate_per_minute=0,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield Service(app, client, search, filtered, admin, limited, trio)


def error(response: Response, status: int) -> str:
    """The message of an error answered in Algolia's shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "status"} and body["status"] == status
    message: str = body["message"]
    return message


class TestKeys:
    def test_the_lite_clients_query_parameters(self, service: Service) -> None:
        assert service.hits(query="sofa")

    def test_the_header_and_bearer(self, service: Service) -> None:
        body = {"requests": [{"indexName": "products", "params": "query=sofa"}]}
        for headers in (
            {"X-Algolia-API-Key": service.search, "X-Algolia-Application-Id": "SHOP"},
            {"Authorization": f"Bearer {service.search}"},
        ):
            assert service.client.post(QUERIES, json=body, headers=headers).status_code == 200

    def test_no_key_or_a_bad_key(self, service: Service) -> None:
        response = service.client.post(QUERIES, json={"requests": []})
        assert "API key is required" in error(response, 401)
        assert "unknown" in error(service.queries({"indexName": "products"}, token="ps_nope"), 401)

    @pytest.mark.parametrize("where", ["query", "header"])
    def test_an_admin_key_is_refused(self, service: Service, where: str) -> None:
        if where == "query":
            response = service.queries({"indexName": "products"}, token=service.admin)
        else:
            response = service.client.get(
                "/1/indexes/products", headers={"X-Algolia-API-Key": service.admin}
            )
        message = error(response, 403)
        assert "admin key" in message and "search key only" in message
        events = service.events([], token=service.admin)
        assert "admin key" in error(events, 403)

    def test_rate_limits_hold(self, service: Service) -> None:
        codes = [
            service.queries({"indexName": "products"}, token=service.limited) for _ in range(4)
        ]
        assert [r.status_code for r in codes[:2]] == [200, 200]
        assert "rate limit" in error(codes[3], 429)
        assert int(codes[3].headers["retry-after"]) >= 1

    def test_each_query_of_a_multi_query_counts(self, service: Service) -> None:
        three = [{"indexName": "products", "query": q} for q in ("sofa", "oak", "lamp")]
        assert service.queries(*three, token=service.trio).status_code == 200
        # The three searches spent the key's burst of three: a fourth is over the limit.
        later = service.queries({"indexName": "products"}, token=service.trio)
        assert "rate limit of 1 requests per minute for this key" in error(later, 429)

    def test_keys_in_urls_are_redacted_from_logs(self, service: Service) -> None:
        line = (
            f'"POST /1/indexes/*/queries?x-algolia-agent=x&x-algolia-api-key={service.search}'
            f'&x-algolia-application-id=SHOP HTTP/1.1" 200 /1/events?X-Algolia-API-Key={service.search}'
        )
        cleaned = redact(line)
        assert service.search not in cleaned and cleaned.count("[redacted]") == 2


class TestSameHitsAsSearch:
    @pytest.mark.parametrize("query", ["sofa", "oak chair", "sofe", "dining", "lamp brass", ""])
    def test_a_query(self, service: Service, query: str) -> None:
        algolia = service.hits(query=query, hitsPerPage=5, userToken="anon-7")
        ours = service.ours(q=query, k=5, user_id="anon-7", session_id="anon-7")
        assert algolia == ours and algolia

    def test_the_params_string_and_the_single_index_routes(self, service: Service) -> None:
        expected = service.ours(q="oak", k=3)
        assert service.hits(params="query=oak&hitsPerPage=3") == expected
        headers = {"X-Algolia-API-Key": service.search}
        single = service.client.post(
            "/1/indexes/products/query", json={"params": "query=oak&hitsPerPage=3"}, headers=headers
        )
        browse = service.client.get(
            "/1/indexes/products",
            params={"query": "oak", "hitsPerPage": 3, "x-algolia-agent": "curl"},
            headers=headers,
        )
        for response in (single, browse):
            assert response.status_code == 200, response.text
            assert [h["objectID"] for h in response.json()["hits"]] == expected

    def test_page_two(self, service: Service) -> None:
        algolia = service.hits(query="", hitsPerPage=3, page=1)
        assert algolia == service.ours(q="", k=3, page=2)
        assert algolia != service.hits(query="", hitsPerPage=3, page=0)

    @pytest.mark.parametrize(
        ("suffix", "sort"), [("_price_asc", "price_asc"), ("_price_desc", "price_desc")]
    )
    def test_sorted_replicas(self, service: Service, suffix: str, sort: str) -> None:
        (result,) = service.algolia({"indexName": "products" + suffix, "query": "sofa"})
        assert [h["objectID"] for h in result["hits"]] == service.ours(q="sofa", sort=sort)

    def test_filters_and_colours(self, service: Service) -> None:
        assert service.hits(query="sofa", facetFilters=["brand:Nordhem"]) == service.ours(
            q="sofa", brand="Nordhem"
        )
        assert service.hits(query="sofa", facetFilters=[["colour:blue"]]) == service.ours(
            q="sofa", colour="blue"
        )
        assert service.hits(numericFilters=["price>=100", "price<=900"]) == service.ours(
            price_min=100, price_max=900
        )

    def test_a_merchandisers_pin(self, service: Service) -> None:
        last = service.ours(q="chair")[-1]
        rule = {
            "id": "pin-chair",
            "match": "contains",
            "query": "chair",
            "actions": [{"type": "pin", "product_id": last, "position": 1}],
        }
        created = service.client.post(
            "/admin/rules", json=rule, headers={"X-API-Key": service.admin}
        )
        assert created.status_code in (200, 201), created.text
        try:
            assert service.hits(query="chair")[0] == last == service.ours(q="chair")[0]
        finally:
            service.client.delete("/admin/rules/pin-chair", headers={"X-API-Key": service.admin})

    def test_ab_arms(self, service: Service) -> None:
        admin = {"X-API-Key": service.admin}
        put = service.client.put("/admin/experiments/e1", json=EXPERIMENT, headers=admin)
        assert put.status_code == 200, put.text
        try:
            (b,) = shoppers_in("b", 1)
            (control,) = shoppers_in("control", 1)
            arms = {}
            for user in (b, control):
                arms[user] = service.hits(query="brown dining", userToken=user)
                assert arms[user] == service.ours(q="brown dining", user_id=user, session_id=user)
            assert arms[b] != arms[control], "the arm's weights rank differently"
        finally:
            service.client.delete("/admin/experiments/e1", headers=admin)


class TestFixedFilters:
    """A key fixed to brand Nordhem: no request widens it."""

    @pytest.mark.parametrize(
        "params",
        [
            {"facetFilters": ["brand:Woodly"]},
            {"facetFilters": [["brand:Woodly", "brand:Casa"]]},
            {"filters": "NOT brand:Nordhem"},
            {"filters": "brand:Woodly OR brand:Casa OR price>=0"},
            {"filters": "brand:Nordhem OR NOT brand:Nordhem"},
            {"query": "oak chair"},
        ],
    )
    def test_only_nordhem_is_ever_seen(self, service: Service, params: dict[str, Any]) -> None:
        (result,) = service.algolia(
            {"indexName": "products", "facets": ["brand"], "hitsPerPage": 50, **params},
            token=service.filtered,
        )
        brands = {PRODUCTS_BY_ID[hit["objectID"]].brand for hit in result["hits"]}
        assert brands <= {"Nordhem"}
        assert set(result["facets"]["brand"]) <= {"Nordhem"}
        assert result["nbHits"] == len(result["hits"])

    def test_the_unfiltered_key_sees_more(self, service: Service) -> None:
        (result,) = service.algolia({"indexName": "products", "facets": ["brand"]})
        assert len(result["facets"]["brand"]) > 1


class TestErrors:
    def test_an_unsupported_parameter_is_named(self, service: Service) -> None:
        response = service.queries(
            {"indexName": "products", "query": "sofa"},
            {"indexName": "products", "params": "aroundLatLng=52.2%2C21.0"},
        )
        assert error(response, 400).startswith("requests[1].aroundLatLng: is not supported")

    @pytest.mark.parametrize(
        ("body", "named"),
        [
            (
                {"requests": [{"indexName": "products", "facetFilters": ["title:x"]}]},
                "requests[0].facetFilters",
            ),
            (
                {"requests": [{"indexName": "products", "filters": "(brand:X"}]},
                "requests[0].filters",
            ),
            (
                {"requests": [{"indexName": "products", "hitsPerPage": 5000}]},
                "requests[0].hitsPerPage",
            ),
            ({"requests": [{"params": "query=x"}]}, "requests[0].indexName"),
            (
                {"requests": [{"indexName": "products", "type": "facet", "facet": "brand"}]},
                "requests[0].type",
            ),
            ({"requests": [{"indexName": "products"}] * (MAX_QUERIES + 1)}, "requests"),
            ({"requests": []}, "requests"),
            (
                {"requests": [{"indexName": "products"}], "strategy": "stopIfEnoughMatches"},
                "strategy",
            ),
            ({"requests": [{"indexName": "products"}], "extra": 1}, "extra"),
            ({"queries": []}, "requests"),
            ([], "requests"),
        ],
    )
    def test_bad_bodies(self, service: Service, body: Any, named: str) -> None:
        response = service.client.post(
            QUERIES, content=json.dumps(body), params={"x-algolia-api-key": service.search}
        )
        assert error(response, 400).startswith(named + ":")

    def test_not_json(self, service: Service) -> None:
        response = service.client.post(
            QUERIES, content=b"{nope", headers={"X-Algolia-API-Key": service.search}
        )
        assert error(response, 400).startswith("body: is not valid JSON")

    def test_an_unknown_index(self, service: Service) -> None:
        message = error(service.queries({"indexName": "prod_EN"}), 404)
        assert "prod_EN" in message and "products_price_asc" in message

    def test_a_huge_body(self, service: Service) -> None:
        response = service.queries({"indexName": "products", "query": "x" * MAX_SEARCH_BODY})
        assert "too large" in error(response, 413)


class TestInsights:
    def searched(self, service: Service, token: str, **params: Any) -> dict[str, Any]:
        (result,) = service.algolia(
            {"indexName": "products", "clickAnalytics": True, "userToken": token, **params}
        )
        return result

    def clicks(self, service: Service, query_id: str) -> list[Any]:
        store = service.app.state.event_store
        return [e for e in store.scan() if e.query_id == query_id and e.type.value == "click"]

    def test_a_click_lands_attributed_to_the_answer(self, service: Service) -> None:
        result = self.searched(service, "anon-click", query="sofa", hitsPerPage=2, page=1)
        query_id = result["queryID"]
        product = result["hits"][0]["objectID"]
        response = service.events(
            [
                {
                    "eventType": "click",
                    "eventName": "Hit Clicked",
                    "index": "products",
                    "userToken": "anon-click",
                    "objectIDs": [product],
                    "positions": [99],  # a client's claim: the record says 3
                    "queryID": query_id,
                    "algoliaSource": ["instantsearch"],
                }
            ]
        )
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1 and response.json()["message"] == "OK"
        (stored,) = self.clicks(service, query_id)
        assert (stored.product_id, stored.query, stored.position) == (product, "sofa", 3)
        assert (stored.user_id, stored.session_id) == ("anon-click", "anon-click")

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"queryID": "f" * 32}, "objectIDs[0].query_id"),
            ({"userToken": "someone-else"}, "objectIDs[0].query_id"),
            ({"objectIDs": ["LAMP-1"]}, "objectIDs[0].product_id"),
        ],
    )
    def test_forged_events_are_refused(
        self, service: Service, change: dict[str, Any], field: str
    ) -> None:
        result = self.searched(service, "anon-forge", query="sofa", hitsPerPage=2)
        event = {
            "eventType": "click",
            "eventName": "Hit Clicked",
            "index": "products",
            "userToken": "anon-forge",
            "objectIDs": [result["hits"][0]["objectID"]],
            "positions": [1],
            "queryID": result["queryID"],
            **change,
        }
        response = service.events([event])
        message = error_or_body(response, 422)
        assert message.startswith(f"event 0: {field}:")
        assert response.json()["events"][0]["status"] == "rejected"
        assert not self.clicks(service, str(event["queryID"]))

    def test_good_and_bad_together(self, service: Service) -> None:
        result = self.searched(service, "anon-mix", query="sofa", hitsPerPage=2)
        good = result["hits"][0]["objectID"]
        response = service.events(
            [
                {
                    "eventType": "conversion",
                    "eventSubtype": "addToCart",
                    "eventName": "Added",
                    "index": "products",
                    "userToken": "anon-mix",
                    "objectIDs": [good, "LAMP-1"],
                    "queryID": result["queryID"],
                },
                {"eventType": "instantsearch", "eventName": "__start__"},
                {"eventType": "click", "filters": ["brand%3ACasa"], "userToken": "anon-mix"},
            ]
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert [e["status"] for e in body["events"]] == ["partial", "skipped", "skipped"]
        assert body["events"][0]["stored"] == 1
        carts = [
            e
            for e in service.app.state.event_store.scan()
            if e.query_id == result["queryID"] and e.type.value == "add_to_cart"
        ]
        assert [e.product_id for e in carts] == [good]

    def test_analytics_off_records_nothing(self, service: Service) -> None:
        result = self.searched(service, "anon-quiet", query="sofa", analytics=False)
        assert "queryID" not in result

    def test_an_empty_batch_and_a_huge_one(self, service: Service) -> None:
        assert error(service.events([]), 400).startswith("events:")
        many = [
            {
                "eventType": "view",
                "eventName": "Viewed",
                "index": "products",
                "userToken": "anon-bulk",
                "objectIDs": ["SOFA-1"] * 20,
            }
        ] * 6
        assert "at most 100" in error(service.events(many), 413)


def error_or_body(response: Response, status: int) -> str:
    """The message of an Insights answer (its body lists each event too)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    message: str = body["message"]
    return message


class TestCors:
    def test_the_preflight_for_algolia_headers(self, service: Service) -> None:
        response = service.client.options(
            QUERIES,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-algolia-api-key,x-algolia-application-id,content-type",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in response.headers["access-control-allow-methods"]
        assert "x-algolia-api-key" in response.headers["access-control-allow-headers"].lower()

    def test_a_search_from_the_shop(self, service: Service) -> None:
        response = service.queries({"indexName": "products"}, headers={"Origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == ORIGIN

    def test_another_origin_gets_no_cors(self, service: Service) -> None:
        response = service.queries(
            {"indexName": "products"}, headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in response.headers


def test_settings_name_the_index(tmp_path: Path) -> None:
    settings = Settings(
        index_dir=build_snapshot(tmp_path), text_embedder="none", algolia_index="shop_pl"
    )
    with TestClient(create_app(settings)) as client:
        ok = client.post(QUERIES, json={"requests": [{"indexName": "shop_pl_price_asc"}]})
        assert ok.status_code == 200
        assert (
            client.post(QUERIES, json={"requests": [{"indexName": "products"}]}).status_code == 404
        )
    with pytest.raises(ValueError, match="algolia_index"):
        Settings(algolia_index="no spaces please")
