"""An Algolia query as the engine's request and the engine's answer in Algolia's shape, over
the shared lexical-only snapshot: index names, facets (hierarchical ones per level), paging,
filters with their meaning checked against the catalogue."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from api.algolia.errors import AlgoliaParamError, UnknownIndexError
from api.algolia.filters import Fields
from api.algolia.params import parse_query_params
from api.algolia.protocol import (
    index_sort,
    plan_facets,
    search_answer,
    search_request,
    split_colour,
)
from search.engine import SearchEngine
from search.index.store import category_label
from search.types import (
    MAX_FACET_LIMIT,
    AllOf,
    AnyOf,
    ColourIs,
    Filters,
    Not,
    SearchRequest,
    SortOrder,
)

FIELDS = Fields(attributes=frozenset({"material"}), category_depth=3)


def request_of(fields: dict[str, Any], key: Filters | None = None) -> SearchRequest:
    params = parse_query_params(fields)
    plan = plan_facets(params, FIELDS)
    return search_request(params, SortOrder.RELEVANCE, FIELDS, key or Filters(), plan, 250)


def answer(engine: SearchEngine, fields: dict[str, Any], index: str = "products") -> dict[str, Any]:
    params = parse_query_params(fields)
    plan = plan_facets(params, FIELDS)
    sort = index_sort(index, "products")
    request = search_request(params, sort, FIELDS, Filters(), plan, 250)
    return search_answer(engine.search(request), params, index, plan, engine.analyzer, "q1")


def ids(body: dict[str, Any]) -> list[str]:
    return [hit["objectID"] for hit in body["hits"]]


class TestIndexNames:
    @pytest.mark.parametrize(
        ("name", "order"),
        [
            ("products", SortOrder.RELEVANCE),
            ("products_price_asc", SortOrder.PRICE_ASC),
            ("products_price_desc", SortOrder.PRICE_DESC),
        ],
    )
    def test_the_index_and_its_replicas(self, name: str, order: SortOrder) -> None:
        assert index_sort(name, "products") is order

    @pytest.mark.parametrize("name", ["product", "products_price", "*", ""])
    def test_unknown(self, name: str) -> None:
        with pytest.raises(UnknownIndexError, match="products_price_asc"):
            index_sort(name, "products")


class TestRequest:
    def test_what_search_would_send(self) -> None:
        request = request_of(
            {
                "query": "sofa",
                "hitsPerPage": 5,
                "page": 1,
                "userToken": "anon-1",
                "queryType": "prefixNone",
            }
        )
        assert request == SearchRequest(
            text="sofa",
            k=5,
            page=2,
            as_you_type=False,
            user_id="anon-1",
            session_id="anon-1",
            facet_limit=100,
        )

    def test_facets_only(self) -> None:
        request = request_of({"hitsPerPage": 0, "page": 3, "facets": ["brand", "categories.lvl1"]})
        assert (request.k, request.page) == (1, 1)
        assert request.facets == ("brand", "category")
        assert request.facet_limit == MAX_FACET_LIMIT

    def test_a_blank_query_browses(self) -> None:
        assert request_of({"query": "  "}).text == ""

    def test_the_keys_filters_stay_and_the_request_only_adds(self) -> None:
        key = Filters(brands=("Nordhem",))
        request = request_of({"filters": "brand:Woodly OR NOT brand:Nordhem"}, key)
        assert request.filters == key
        assert request.where == AnyOf((Filters(brands=("Woodly",)), Not(key)))

    def test_a_lone_colour_ranks(self) -> None:
        request = request_of({"facetFilters": [["colour:navy"], "brand:X"]})
        assert request.colour == "navy" and request.where == Filters(brands=("X",))

    def test_split_colour(self) -> None:
        red, blue = ColourIs("red"), ColourIs("blue")
        assert split_colour(red) == (None, "red")
        assert split_colour(AnyOf((red, blue))) == (AnyOf((red, blue)), None)
        assert split_colour(AllOf((red, blue))) == (AllOf((red, blue)), None)
        assert split_colour(AllOf((red, Filters(), Filters()))) == (
            AllOf((Filters(), Filters())),
            "red",
        )
        assert split_colour(None) == (None, None)

    def test_page_size_is_capped_by_the_service(self) -> None:
        params = parse_query_params({"hitsPerPage": 300})
        with pytest.raises(AlgoliaParamError, match="at most 250") as caught:
            search_request(
                params, SortOrder.RELEVANCE, FIELDS, Filters(), plan_facets(params, FIELDS), 250
            )
        assert caught.value.field == "hitsPerPage"

    @pytest.mark.parametrize("facet", ["title", "objectID", "attributes.colour"])
    def test_unknown_facets(self, facet: str) -> None:
        with pytest.raises(AlgoliaParamError) as caught:
            request_of({"facets": [facet]})
        assert caught.value.field == "facets"

    def test_every_facet(self) -> None:
        params = parse_query_params({"facets": "*"})
        names = [name for name, _ in plan_facets(params, FIELDS).requested]
        assert names == [
            "brand", "categories.lvl0", "categories.lvl1", "categories.lvl2", "colour",
            "availability", "price", "attributes.material",
        ]  # fmt: skip


class TestAnswer:
    def test_hierarchical_facets_count_each_level(self, core_engine: SearchEngine) -> None:
        body = answer(
            core_engine,
            {"hitsPerPage": 0, "facets": ["categories.lvl0", "categories.lvl1", "categories.lvl2"]},
        )
        products = core_engine.store.products
        for level in range(3):
            expected = Counter(
                category_label(path[: level + 1])
                for p in products
                for path in {c[: level + 1] for c in p.categories}
                if len(path) > level
            )
            assert body["facets"][f"categories.lvl{level}"] == dict(expected), level
        assert body["hits"] == [] and body["nbHits"] == len(core_engine) and body["nbPages"] == 0

    def test_a_refined_level_narrows_and_keeps_its_parents_counts_apart(
        self, core_engine: SearchEngine
    ) -> None:
        body = answer(
            core_engine,
            {
                "facets": ["categories.lvl0", "categories.lvl1"],
                "facetFilters": [["categories.lvl1:Furniture > Dining"]],
            },
        )
        assert set(ids(body)) == {"CHAIR-1", "CHAIR-2", "TABLE-1"}
        assert body["facets"]["categories.lvl0"] == {"Furniture": 3}
        assert body["facets"]["categories.lvl1"] == {"Furniture > Dining": 3}

    def test_max_values_per_facet(self, core_engine: SearchEngine) -> None:
        body = answer(core_engine, {"facets": ["brand", "categories.lvl2"], "maxValuesPerFacet": 2})
        assert len(body["facets"]["brand"]) == len(body["facets"]["categories.lvl2"]) == 2

    def test_price_stats(self, core_engine: SearchEngine) -> None:
        body = answer(core_engine, {"facets": ["price"], "facetFilters": ["brand:Woodly"]})
        prices = [p.effective_price for p in core_engine.store.products if p.brand == "Woodly"]
        assert body["facets"]["price"] == {}
        stats = body["facets_stats"]["price"]
        assert (stats["min"], stats["max"]) == (min(prices), max(prices))
        assert stats["sum"] == pytest.approx(sum(prices))

    def test_paging(self, core_engine: SearchEngine) -> None:
        first = answer(core_engine, {"hitsPerPage": 5})
        second = answer(core_engine, {"hitsPerPage": 5, "page": 1})
        assert first["nbPages"] == second["nbPages"] == 3 and first["nbHits"] == 12
        assert second["page"] == 1 and not set(ids(first)) & set(ids(second))

    def test_sorted_replicas(self, core_engine: SearchEngine) -> None:
        body = answer(core_engine, {"facetFilters": ["brand:Woodly"]}, "products_price_desc")
        prices = [hit["price"] for hit in body["hits"]]
        assert prices == sorted(prices, reverse=True) and len(prices) == 3

    @pytest.mark.parametrize(
        ("fields", "keep"),
        [
            (
                {"filters": "brand:Casa OR price<60"},
                lambda p, price: p.brand == "Casa" or price < 60,
            ),
            (
                {"filters": "categories.lvl0:Clothing AND NOT brand:fjord"},
                lambda p, price: p.categories[0][0] == "Clothing" and p.brand.lower() != "fjord",
            ),
            (
                {"facetFilters": ["categories.lvl0:Clothing", "brand:-Fjord"]},
                lambda p, price: p.categories[0][0] == "Clothing" and p.brand.lower() != "fjord",
            ),
            (
                {"numericFilters": [["price<50", "price>1000"]]},
                lambda p, price: price < 50 or price > 1000,
            ),
            ({"numericFilters": ["price:100 TO 150"]}, lambda p, price: 100 <= price <= 150),
            ({"filters": "NOT price:100 TO 150"}, lambda p, price: not 100 <= price <= 150),
            (
                {"filters": "attributes.material:oak AND availability:in_stock"},
                lambda p, price: (
                    "oak" in p.attributes.get("material", ()) and p.availability.value == "in_stock"
                ),
            ),
        ],
    )
    def test_filters_mean_what_they_say(
        self, core_engine: SearchEngine, fields: dict[str, Any], keep: Any
    ) -> None:
        # Prices compare in the shop's base currency (NaN: in a currency no rate converts).
        prices = core_engine.price_column().prices
        expected = {
            p.id for doc, p in enumerate(core_engine.store.products) if keep(p, prices[doc])
        }
        body = answer(core_engine, {"hitsPerPage": 50, **fields})
        assert set(ids(body)) == expected and expected

    def test_colour_alternatives(self, core_engine: SearchEngine) -> None:
        body = answer(
            core_engine, {"hitsPerPage": 50, "facetFilters": [["colour:black", "colour:red"]]}
        )
        families = {hit["objectID"]: set(hit["colour"]) for hit in body["hits"]}
        assert families and all(f & {"black", "red"} for f in families.values())
        counts = answer(core_engine, {"facets": ["colour"], "hitsPerPage": 0})["facets"]["colour"]
        both = sum(1 for f in families.values() if {"black", "red"} <= f)
        assert len(families) == counts["black"] + counts["red"] - both

    def test_shape(self, core_engine: SearchEngine) -> None:
        body = answer(core_engine, {"query": "oak", "clickAnalytics": True, "hitsPerPage": 2})
        assert body["queryID"] == "q1" and body["index"] == "products"
        assert body["query"] == "oak" and "query=oak" in body["params"]
        assert body["exhaustiveNbHits"] is True and isinstance(body["processingTimeMS"], int)
        hit = body["hits"][0]
        assert hit["_highlightResult"]["title"]["matchLevel"] == "full"
        assert "queryID" not in answer(core_engine, {"query": "oak"})
