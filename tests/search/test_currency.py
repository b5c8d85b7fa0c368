"""Prices in several currencies: filters, sorting and the price facet compare like with like.

Issue 15 §8: ``price_max=500`` compared bare numbers, so it kept a 310 EUR chair (about 1,330
PLN) and a 500 PLN chair alike, and ``sort=price_desc`` put 1,899 PLN above 999 EUR. Prices are
now compared in one currency (the request's ``currency``, else the shop's base currency),
converted with the shop's exchange rates; a price no rate converts is left out of price filters
and sorted after the comparable ones, and the answer says which currency and whether it
converted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import open_snapshot
from api.settings import Settings
from indexer.build import BuildConfig, build_snapshot
from search.engine import EngineConfig, SearchEngine
from search.errors import InvalidRequestError
from search.types import Filters, Product, SearchRequest, SearchResult, SortOrder

RATES = {"EUR": 4.3, "USD": 4.0}  # PLN per unit


def chair(pid: str, wood: str, price: float | None, currency: str | None) -> Product:
    return Product(
        pid,
        f"{wood} chair",
        categories=(("Furniture", "Chairs"),),
        price=price,
        currency=currency if price is not None else None,
    )


PRODUCTS = [
    chair("EUR-310", "Oak", 310.0, "EUR"),  # 1,333 PLN
    chair("PLN-500", "Beech", 500.0, "PLN"),
    chair("PLN-549", "Birch", 549.0, "PLN"),
    chair("USD-120", "Walnut", 120.0, "USD"),  # 480 PLN
    chair("GBP-90", "Ash", 90.0, "GBP"),  # no rate: never compared with the others
    chair("BARE-200", "Pine", 200.0, None),  # no currency named: the shop's own
    chair("NO-PRICE", "Elm", None, None),
    chair("PLN-150", "Teak", 150.0, "PLN"),
]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("currency") / "snap"
    build_snapshot(PRODUCTS, out, config=BuildConfig(embedder="none", photo_colours=False))
    return out


@pytest.fixture(scope="module")
def plain(snapshot: Path) -> SearchEngine:
    """No currency settings: the base is the catalogue's main currency (PLN), no rates."""
    return open_snapshot(snapshot, use_semantic=False, ranker="none")


@pytest.fixture(scope="module")
def rated(plain: SearchEngine) -> SearchEngine:
    return plain.with_config(EngineConfig(currency="PLN", currency_rates=RATES))


def search(engine: SearchEngine, **kwargs: object) -> SearchResult:
    request = SearchRequest(**{"text": "chair", "k": 50, "as_you_type": False, **kwargs})  # type: ignore[arg-type]
    return engine.search(request)


def ids(result: SearchResult) -> list[str]:
    return [h.product.id for h in result.hits]


class TestPriceFilter:
    def test_the_reported_case_without_rates(self, plain: SearchEngine) -> None:
        # Old: 310 EUR passed price_max=500 as the bare number 310.
        result = search(plain, filters=Filters(price_max=500))
        assert set(ids(result)) == {"PLN-500", "PLN-150", "BARE-200"}
        assert (result.currency, result.converted) == ("PLN", False)
        assert result.total == 3

    def test_with_rates_prices_are_converted(self, rated: SearchEngine) -> None:
        result = search(rated, filters=Filters(price_max=500))
        # 120 USD = 480 PLN passes; 310 EUR = 1,333 PLN does not; GBP has no rate.
        assert set(ids(result)) == {"PLN-500", "PLN-150", "BARE-200", "USD-120"}
        assert (result.currency, result.converted) == ("PLN", True)
        result = search(rated, filters=Filters(price_min=1000, price_max=1500))
        assert ids(result) == ["EUR-310"]

    def test_request_currency(self, rated: SearchEngine) -> None:
        # In EUR: 500 PLN = 116.28, 549 PLN = 127.67, 120 USD = 111.63, 200 PLN = 46.51.
        result = search(rated, currency="EUR", filters=Filters(price_min=100, price_max=120))
        assert set(ids(result)) == {"PLN-500", "USD-120"}
        assert (result.currency, result.converted) == ("EUR", True)
        result = search(rated, currency="eur", filters=Filters(price_min=300))
        assert ids(result) == ["EUR-310"]

    def test_a_currency_without_rate_compares_only_its_own_prices(
        self, rated: SearchEngine
    ) -> None:
        result = search(rated, currency="GBP", filters=Filters(price_max=100))
        assert ids(result) == ["GBP-90"]
        assert (result.currency, result.converted) == ("GBP", False)

    def test_no_price_filter_keeps_every_currency(self, plain: SearchEngine) -> None:
        assert len(ids(search(plain))) == len(PRODUCTS)


class TestPriceSort:
    def test_ascending_with_rates(self, rated: SearchEngine) -> None:
        order = ids(search(rated, sort=SortOrder.PRICE_ASC))
        # 150, 200, 480 (USD), 500, 549, 1,333 (EUR) PLN; then GBP (no rate); no price last.
        assert order == [
            "PLN-150",
            "BARE-200",
            "USD-120",
            "PLN-500",
            "PLN-549",
            "EUR-310",
            "GBP-90",
            "NO-PRICE",
        ]

    def test_descending_with_rates(self, rated: SearchEngine) -> None:
        order = ids(search(rated, sort=SortOrder.PRICE_DESC))
        assert order[:3] == ["EUR-310", "PLN-549", "PLN-500"]
        assert order[-2:] == ["GBP-90", "NO-PRICE"]

    def test_without_rates_foreign_prices_come_after(self, plain: SearchEngine) -> None:
        order = ids(search(plain, sort=SortOrder.PRICE_DESC))
        # Old: 310 (EUR) sat between 500 and 200 PLN as a bare number.
        assert order[:4] == ["PLN-549", "PLN-500", "BARE-200", "PLN-150"]
        assert set(order[4:7]) == {"EUR-310", "USD-120", "GBP-90"}
        assert order[-1] == "NO-PRICE"

    def test_paging_a_sorted_answer(self, rated: SearchEngine) -> None:
        whole = ids(search(rated, sort=SortOrder.PRICE_ASC))
        pages = [ids(search(rated, sort=SortOrder.PRICE_ASC, k=3, page=p)) for p in (1, 2, 3)]
        assert [i for page in pages for i in page] == whole


class TestPriceFacet:
    @staticmethod
    def buckets(result: SearchResult) -> list[tuple[float, float, int]]:
        out = []
        for bucket in result.facets["price"]:
            low, high = (float(x) for x in bucket.value.split("-"))
            out.append((low, high, bucket.count))
        return out

    def test_buckets_are_in_the_currency_and_count_comparable_prices(
        self, rated: SearchEngine
    ) -> None:
        result = search(rated, facets=("price",))
        assert {b.currency for b in result.facets["price"]} == {"PLN"}
        buckets = self.buckets(result)
        assert sum(c for _, _, c in buckets) == 6  # neither GBP nor the missing price
        # The 310 EUR chair is counted at 1,333 PLN: in the top bucket.
        low, high, _ = buckets[-1]
        assert low <= 310 * 4.3 <= high
        assert high >= 1333

    def test_in_the_request_currency(self, rated: SearchEngine) -> None:
        result = search(rated, currency="EUR", facets=("price",))
        assert {b.currency for b in result.facets["price"]} == {"EUR"}
        assert max(high for _, high, _ in self.buckets(result)) < 400

    def test_without_rates_only_the_base_currency(self, plain: SearchEngine) -> None:
        buckets = self.buckets(search(plain, facets=("price",)))
        assert sum(c for _, _, c in buckets) == 4  # the PLN prices and the bare one
        assert max(high for _, high, _ in buckets) < 600


class TestCurrencyErrors:
    @pytest.mark.parametrize("code", ["EURO", "E1", "€"])
    def test_malformed_code(self, rated: SearchEngine, code: str) -> None:
        with pytest.raises(InvalidRequestError) as info:
            search(rated, currency=code)
        assert info.value.field == "currency"

    def test_unknown_currency_lists_the_valid_ones(self, rated: SearchEngine) -> None:
        with pytest.raises(InvalidRequestError) as info:
            search(rated, currency="JPY")
        assert info.value.field == "currency"
        assert "EUR" in info.value.message and "PLN" in info.value.message

    @pytest.mark.parametrize(
        "config",
        [
            EngineConfig(currency_rates={"EUR": 4.3}),  # rates quoted in no currency
            EngineConfig(currency="PLN", currency_rates={"EUR": -1.0}),
            EngineConfig(currency="PLN", currency_rates={"EUR": float("nan")}),
            EngineConfig(currency="zloty"),
        ],
    )
    def test_bad_settings(self, plain: SearchEngine, config: EngineConfig) -> None:
        with pytest.raises(ValueError):
            plain.with_config(config)


@pytest.fixture(scope="module")
def client(snapshot: Path) -> Iterator[TestClient]:
    """The service with the shop's currency settings read from the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRODUCTSEARCH_CURRENCY", "PLN")
        patch.setenv("PRODUCTSEARCH_CURRENCY_RATES", '{"EUR": 4.3, "USD": 4.0}')
        settings = Settings(index_dir=snapshot, text_embedder="none")
    assert (settings.currency, settings.currency_rates) == ("PLN", RATES)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


class TestApi:
    def test_answer_says_currency_and_conversion(self, client: TestClient) -> None:
        response = client.get(
            "/search", params={"q": "chair", "price_max": 500, "facets": "price", "k": 50}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["currency"], body["converted"]) == ("PLN", True)
        assert {h["id"] for h in body["hits"]} == {"PLN-500", "PLN-150", "BARE-200", "USD-120"}
        assert {b["currency"] for b in body["facets"]["price"]} == {"PLN"}

    def test_currency_parameter(self, client: TestClient) -> None:
        body = client.get(
            "/search", params={"q": "chair", "currency": "usd", "sort": "price_desc"}
        ).json()
        assert body["currency"] == "USD"
        assert body["hits"][0]["id"] == "EUR-310"

    @pytest.mark.parametrize("code", ["JPY", "EURO"])
    def test_bad_currency_is_422_naming_it(self, client: TestClient, code: str) -> None:
        response = client.get("/search", params={"q": "chair", "currency": code})
        assert response.status_code == 422
        assert "currency" in response.text
