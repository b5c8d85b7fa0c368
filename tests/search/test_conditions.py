"""Boolean filter conditions (``SearchRequest.where``), facet value limits and price facet
statistics over the shared lexical-only snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from search.engine import SearchEngine
from search.errors import InvalidRequestError
from search.types import (
    MAX_CONDITION_DEPTH,
    AllOf,
    AnyOf,
    ColourIs,
    Condition,
    Filters,
    Not,
    SearchRequest,
    condition_size,
)


def matching(
    engine: SearchEngine, where: Condition | None, text: str = "", **kw: object
) -> set[str]:
    """Ids of every product a browse (or a query) with ``where`` finds."""
    request = SearchRequest(text=text, k=50, where=where, **kw)  # type: ignore[arg-type]
    return {hit.product.id for hit in engine.search(request).hits}


class TestConditions:
    def test_none_and_an_empty_all_of_keep_everything(self, core_engine: SearchEngine) -> None:
        everything = matching(core_engine, None)
        assert len(everything) == len(core_engine)
        assert matching(core_engine, AllOf(())) == everything

    def test_an_empty_any_of_keeps_nothing(self, core_engine: SearchEngine) -> None:
        assert matching(core_engine, AnyOf(())) == set()

    def test_or_across_fields(self, core_engine: SearchEngine) -> None:
        where = AnyOf((Filters(brands=("Casa",)), Filters(price_max=60.0)))
        assert matching(core_engine, where) == {"WARDROBE-1", "SHIRT-1", "JEANS-1"}

    def test_not(self, core_engine: SearchEngine) -> None:
        clothing = Filters(categories=(("Clothing",),))
        where = AllOf((clothing, Not(Filters(brands=("fjord",)))))
        assert matching(core_engine, where) == {"JEANS-1"}

    def test_not_of_a_price_keeps_products_without_a_comparable_one(
        self, core_engine: SearchEngine
    ) -> None:
        prices = core_engine.price_column().prices
        unpriced = {core_engine.store.ids[d] for d in np.flatnonzero(~np.isfinite(prices))}
        assert "WARDROBE-1" in unpriced  # no price at all; others are in another currency
        kept = matching(core_engine, Not(Filters(price_min=0.0)))
        assert kept == unpriced

    def test_colour_leaves(self, core_engine: SearchEngine) -> None:
        red_or_black = matching(core_engine, AnyOf((ColourIs("red"), ColourIs("black"))))
        assert {"SOFA-1", "KURTKA-1", "COAT-1"} <= red_or_black
        assert "CHAIR-1" not in red_or_black

    def test_a_bad_colour_names_the_field(self, core_engine: SearchEngine) -> None:
        with pytest.raises(InvalidRequestError) as caught:
            matching(core_engine, ColourIs("no-such-colour-xyz"))
        assert caught.value.field == "colour"

    def test_the_condition_narrows_a_query_and_the_key_filters_still_hold(
        self, core_engine: SearchEngine
    ) -> None:
        where = AnyOf((Filters(brands=("Nordhem",)), Filters(brands=("Woodly",))))
        hits = matching(core_engine, where, "chair", filters=Filters(brands=("Woodly",)))
        assert hits and all(core_engine.get_product(i).brand == "Woodly" for i in hits), (
            "the filters and the condition must both hold"
        )

    def test_depth_and_size_are_bounded(self, core_engine: SearchEngine) -> None:
        deep: Condition = Filters(brands=("Casa",))
        for _ in range(MAX_CONDITION_DEPTH + 5):
            deep = Not(deep)
        assert condition_size(deep) == (MAX_CONDITION_DEPTH + 6, 1)
        with pytest.raises(InvalidRequestError) as caught:
            matching(core_engine, deep)
        assert caught.value.field == "where"
        wide = AnyOf(tuple(Filters(brands=(f"b{i}",)) for i in range(1001)))
        with pytest.raises(InvalidRequestError, match="1001 conditions"):
            matching(core_engine, wide)

    def test_condition_size_does_not_recurse(self) -> None:
        deep: Condition = Filters()
        for _ in range(50_000):
            deep = Not(deep)
        assert condition_size(deep) == (50_001, 1)


class TestFacetLimitAndStats:
    def test_facet_limit_cuts_every_facet(self, core_engine: SearchEngine) -> None:
        request = SearchRequest(facets=("category", "brand", "colour"), facet_limit=2)
        result = core_engine.search(request)
        assert all(len(values) <= 2 for values in result.facets.values())
        full = core_engine.search(SearchRequest(facets=("category",), facet_limit=1000))
        assert len(full.facets["category"]) > 20  # every depth of every path

    @pytest.mark.parametrize("limit", [0, 1001])
    def test_facet_limit_is_bounded(self, core_engine: SearchEngine, limit: int) -> None:
        with pytest.raises(InvalidRequestError) as caught:
            core_engine.search(SearchRequest(facet_limit=limit))
        assert caught.value.field == "facet_limit"

    def test_price_stats_over_the_matching_products(self, core_engine: SearchEngine) -> None:
        result = core_engine.search(
            SearchRequest(facets=("price",), filters=Filters(brands=("Woodly",)))
        )
        prices = [
            p.effective_price
            for p in core_engine.store.products
            if p.brand == "Woodly" and p.effective_price is not None
        ]
        stats = result.facet_stats["price"]
        assert (stats.min, stats.max, stats.count) == (min(prices), max(prices), len(prices))
        assert stats.sum == pytest.approx(sum(prices))
        assert stats.avg == pytest.approx(sum(prices) / len(prices))

    def test_no_stats_without_the_price_facet(self, core_engine: SearchEngine) -> None:
        assert core_engine.search(SearchRequest(facets=("brand",))).facet_stats == {}
