"""``GET /search``: results, filters, facets, sorting, paging, explanations and every 422."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api import PRODUCTS, PRODUCTS_BY_ID, build_snapshot

MAX_K = 50


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("search-api"))


@pytest.fixture(scope="module")
def client(snapshot_dir: Path) -> Iterator[TestClient]:
    settings = Settings(index_dir=snapshot_dir, text_embedder="none", max_k=MAX_K)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def search(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [hit["id"] for hit in body["hits"]]


class TestSearch:
    def test_query_finds_matching_products_first(self, client: TestClient) -> None:
        body = search(client, q="sofa")

        assert body["query"] == "sofa"
        assert body["page"] == 1
        assert body["k"] == 10
        assert body["total"] >= 3
        assert set(ids(body)[:3]) == {"SOFA-1", "SOFA-2", "SOFA-3"}
        scores = [hit["score"] for hit in body["hits"]]
        assert scores == sorted(scores, reverse=True)
        assert body["took_ms"] >= 0
        assert body["facets"] == {}

    def test_hit_is_flat_with_display_fields(self, client: TestClient) -> None:
        body = search(client, q="Bergen leather sofa")

        hit = next(hit for hit in body["hits"] if hit["id"] == "SOFA-2")
        assert hit["title"] == "Bergen leather sofa"
        assert hit["brand"] == "Nordhem"
        assert hit["price"] == 999.0  # the sale price is what a shopper pays
        assert hit["currency"] == "EUR"
        assert hit["availability"] == "in_stock"
        assert hit["categories"] == ["Furniture > Sofas"]
        assert hit["image"] is None
        assert hit["explanation"] is None

    def test_hit_image_is_the_first_image(self, client: TestClient) -> None:
        hit = next(hit for hit in search(client, q="oslo")["hits"] if hit["id"] == "SOFA-1")

        assert hit["image"] == "https://shop.example/img/sofa-1.jpg"
        assert hit["url"] == "https://shop.example/p/SOFA-1"

    @pytest.mark.parametrize("q", ["", " ", "   \t "])
    def test_empty_or_blank_query_browses(self, client: TestClient, q: str) -> None:
        body = search(client, q=q, k=MAX_K)

        assert body["total"] == len(PRODUCTS)
        assert sorted(ids(body)) == sorted(PRODUCTS_BY_ID)

    def test_missing_query_browses(self, client: TestClient) -> None:
        assert search(client)["total"] == len(PRODUCTS)

    def test_query_matching_nothing_is_empty_not_an_error(self, client: TestClient) -> None:
        body = search(client, q="zzqxj", as_you_type=False)

        assert body["hits"] == [] or body["total"] == len(body["hits"])

    def test_brand_filter_is_any_of(self, client: TestClient) -> None:
        body = search(client, brand=["Casa", "Woodly"], k=MAX_K)

        assert set(ids(body)) == {"SOFA-3", "CHAIR-1", "CUSHION-1", "CHAIR-2", "TABLE-1"}
        assert body["total"] == 5

    def test_brand_filter_is_case_insensitive(self, client: TestClient) -> None:
        assert set(ids(search(client, brand="nordhem"))) == {"SOFA-1", "SOFA-2"}

    def test_category_filter_matches_path_prefix(self, client: TestClient) -> None:
        assert set(ids(search(client, category="Furniture > Chairs"))) == {"CHAIR-1", "CHAIR-2"}
        assert search(client, category="Furniture", k=MAX_K)["total"] == 6

    def test_attribute_filters_and_across_names(self, client: TestClient) -> None:
        body = search(client, attr=["material:fabric", "seats:2"])

        assert ids(body) == ["SOFA-3"]

    def test_attribute_values_of_one_name_or(self, client: TestClient) -> None:
        body = search(client, attr=["material:oak", "material:walnut"], k=MAX_K)

        assert set(ids(body)) == {"CHAIR-1", "CHAIR-2", "TABLE-1"}

    def test_price_range_uses_the_effective_price(self, client: TestClient) -> None:
        body = search(client, price_min=500, price_max=1000, k=MAX_K)

        assert set(ids(body)) == {"SOFA-1", "SOFA-2", "TABLE-1"}

    def test_availability_filter(self, client: TestClient) -> None:
        body = search(client, availability=["preorder", "backorder"], k=MAX_K)

        assert set(ids(body)) == {"CHAIR-2", "LAMP-1"}

    def test_filters_combine_with_the_query(self, client: TestClient) -> None:
        body = search(client, q="sofa", availability="in_stock", price_max=900)

        assert ids(body) == ["SOFA-1"] or set(ids(body)) == {"SOFA-1"}
        assert all(PRODUCTS_BY_ID[i].availability.value == "in_stock" for i in ids(body))

    @pytest.mark.parametrize(
        ("sort", "reverse"), [("price_asc", False), ("price_desc", True)], ids=["asc", "desc"]
    )
    def test_sort_by_price(self, client: TestClient, sort: str, reverse: bool) -> None:
        body = search(client, sort=sort, k=MAX_K)

        prices = [hit["price"] for hit in body["hits"] if hit["price"] is not None]
        assert prices == sorted(prices, reverse=reverse)
        assert len(prices) == len(PRODUCTS) - 1  # the lamp has no price
        assert body["hits"][-1]["id"] == "LAMP-1"  # unknown prices sort last either way

    def test_sort_relevance_is_the_default(self, client: TestClient) -> None:
        assert ids(search(client, q="sofa")) == ids(search(client, q="sofa", sort="relevance"))

    def test_pages_are_disjoint_and_cover_all(self, client: TestClient) -> None:
        everything = ids(search(client, k=MAX_K))
        pages = [search(client, k=3, page=page) for page in (1, 2, 3, 4)]

        assert [len(page["hits"]) for page in pages] == [3, 3, 2, 0]
        assert [page["page"] for page in pages] == [1, 2, 3, 4]
        assert all(page["total"] == len(PRODUCTS) for page in pages)
        assert [i for page in pages for i in ids(page)] == everything

    def test_facets_count_matching_products(self, client: TestClient) -> None:
        body = search(client, q="", facets="brand,category,availability,attr:material")

        facets = body["facets"]
        assert set(facets) == {"brand", "category", "availability", "attr:material"}
        brands = {bucket["value"]: bucket["count"] for bucket in facets["brand"]}
        assert brands == {"Casa": 3, "Nordhem": 2, "Woodly": 2}
        counts = [bucket["count"] for bucket in facets["brand"]]
        assert counts == sorted(counts, reverse=True)
        materials = {bucket["value"]: bucket["count"] for bucket in facets["attr:material"]}
        assert materials["oak"] == 2
        assert materials["fabric"] == 2
        stock = {bucket["value"]: bucket["count"] for bucket in facets["availability"]}
        assert stock["in_stock"] == 5

    def test_facets_follow_the_filters(self, client: TestClient) -> None:
        body = search(client, brand="Woodly", facets="brand")

        assert body["facets"]["brand"] == [{"value": "Woodly", "count": 2, "swatch": None}]

    def test_price_facet(self, client: TestClient) -> None:
        body = search(client, facets="price")

        assert "price" in body["facets"]
        assert all(bucket["count"] >= 0 for bucket in body["facets"]["price"])

    def test_facet_list_tolerates_spaces_and_repeats(self, client: TestClient) -> None:
        body = search(client, facets=" brand , brand,,")

        assert list(body["facets"]) == ["brand"]

    def test_explain_attaches_an_explanation_to_every_hit(self, client: TestClient) -> None:
        body = search(client, q="oak chair", explain=True)

        assert body["hits"]
        for hit in body["hits"]:
            explanation = hit["explanation"]
            assert explanation is not None
            assert set(explanation) == {"retrievers", "fused_score", "adjustments", "matched_terms"}
            for trace in explanation["retrievers"]:
                assert set(trace) == {"retriever", "rank", "score", "weight"}
                assert trace["rank"] >= 1

    def test_misspelt_query_is_corrected(self, client: TestClient) -> None:
        body = search(client, q="leathr sofa", as_you_type=False)

        assert body["corrected_query"] is not None
        assert "SOFA-2" in ids(body)[:3]

    def test_as_you_type_matches_a_prefix(self, client: TestClient) -> None:
        assert "CUSHION-1" in ids(search(client, q="cush"))

    @pytest.mark.parametrize("k", [1, MAX_K])
    def test_k_bounds_are_inclusive(self, client: TestClient, k: int) -> None:
        body = search(client, k=k)

        assert body["k"] == k
        assert len(body["hits"]) == min(k, len(PRODUCTS))

    def test_personalisation_parameters_are_accepted(self, client: TestClient) -> None:
        body = search(client, q="sofa", user_id="u1", session_id="s1", channel="app")

        assert body["hits"]


def error_locs(response: Any) -> list[list[str]]:
    assert response.status_code == 422, response.text
    # FastAPI adds the item index for list parameters (["query", "availability", 0]).
    return [error["loc"][:2] for error in response.json()["detail"]]


class TestSearchValidation:
    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"k": 0}, "k"),
            ({"k": MAX_K + 1}, "k"),
            ({"k": "ten"}, "k"),
            ({"page": 0}, "page"),
            ({"page": -1}, "page"),
            ({"price_min": -1}, "price_min"),
            ({"price_max": -0.5}, "price_max"),
            ({"price_min": "nan"}, "price_min"),
            ({"price_max": "inf"}, "price_max"),
            ({"price_min": 10, "price_max": 5}, "price_min"),
            ({"attr": "material"}, "attr"),
            ({"attr": ":oak"}, "attr"),
            ({"attr": "material:"}, "attr"),
            ({"attr": ["material:oak", "colour"]}, "attr"),
            ({"category": "Furniture > "}, "category"),
            ({"category": " "}, "category"),
            ({"facets": "rating"}, "facets"),
            ({"facets": "brand,attr:nonexistent"}, "facets"),
            ({"facets": "attr:"}, "facets"),
            ({"sort": "popularity"}, "sort"),
            ({"availability": "sold"}, "availability"),
            ({"channel": "tv"}, "channel"),
            ({"explain": "maybe"}, "explain"),
            ({"q": "x" * 1001}, "q"),
            ({"currency": "euro"}, "currency"),
            ({"currency": "JPY"}, "currency"),  # no product priced in it, no rate to it
        ],
    )
    def test_bad_parameter_is_422_naming_it(
        self, client: TestClient, params: dict[str, Any], field: str
    ) -> None:
        response = client.get("/search", params=params)

        assert error_locs(response) == [["query", field]]
        error = response.json()["detail"][0]
        assert error["msg"]
        assert error["type"]

    def test_engine_error_has_fastapi_shape(self, client: TestClient) -> None:
        response = client.get("/search", params={"k": MAX_K + 1})

        assert response.json() == {
            "detail": [
                {
                    "loc": ["query", "k"],
                    "msg": f"must be at most {MAX_K}, got {MAX_K + 1}",
                    "type": "value_error",
                }
            ]
        }

    def test_unknown_facet_message_lists_valid_names(self, client: TestClient) -> None:
        response = client.get("/search", params={"facets": "rating"})

        message = response.json()["detail"][0]["msg"]
        assert "'rating'" in message
        assert "brand" in message
        assert "attr:material" in message
