"""``GET /products/{id}``: every field of one product, 404 for unknown ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from search.colour import lookup
from tests.api import PRODUCTS, build_snapshot


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    snapshot: Path = build_snapshot(tmp_path_factory.mktemp("products-api"))
    with TestClient(create_app(Settings(index_dir=snapshot, text_embedder="none"))) as test_client:
        yield test_client


class TestReadProduct:
    def test_returns_every_field(self, client: TestClient) -> None:
        response = client.get("/products/SOFA-1")

        assert response.status_code == 200
        assert response.json() == {
            "id": "SOFA-1",
            "title": "Oslo three-seat sofa",
            "description": "A deep grey fabric sofa for three.",
            "brand": "Nordhem",
            "categories": ["Furniture > Sofas"],
            "category_paths": [["Furniture", "Sofas"]],
            "attributes": {"material": ["fabric"], "seats": ["3"]},
            "catalogue_colours": ["grey"],
            "colours": [
                {
                    "name": "grey",
                    "family": "grey",
                    "hex": lookup("grey").hex,  # type: ignore[union-attr]
                    "source": "text",
                    "share": 1.0,
                    "confidence": 1.0,
                }
            ],
            "price": {"amount": 799.0, "currency": "EUR"},
            "sale_price": None,
            "effective_price": {"amount": 799.0, "currency": "EUR"},
            "availability": "in_stock",
            "images": ["https://shop.example/img/sofa-1.jpg"],
            "url": "https://shop.example/p/SOFA-1",
            "gtin": "4006381333931",
            "lang": "en",
        }

    def test_sale_price(self, client: TestClient) -> None:
        body = client.get("/products/SOFA-2").json()

        assert body["price"] == {"amount": 1299.0, "currency": "EUR"}
        assert body["sale_price"] == {"amount": 999.0, "currency": "EUR"}
        assert body["effective_price"] == {"amount": 999.0, "currency": "EUR"}

    def test_unknown_price_is_null(self, client: TestClient) -> None:
        body = client.get("/products/LAMP-1").json()

        assert body["price"] is None
        assert body["effective_price"] is None
        assert body["brand"] is None
        assert body["availability"] == "backorder"

    def test_several_categories(self, client: TestClient) -> None:
        body = client.get("/products/SOFA-3").json()

        assert body["categories"] == ["Furniture > Sofas", "Bedroom > Beds"]
        assert body["category_paths"] == [["Furniture", "Sofas"], ["Bedroom", "Beds"]]

    @pytest.mark.parametrize("product_id", [p.id for p in PRODUCTS])
    def test_every_product_is_readable(self, client: TestClient, product_id: str) -> None:
        assert client.get(f"/products/{product_id}").json()["id"] == product_id

    @pytest.mark.parametrize("product_id", ["NOPE", "sofa-1", "SOFA-1 "])
    def test_unknown_id_is_404_naming_it(self, client: TestClient, product_id: str) -> None:
        response = client.get(f"/products/{product_id}")

        assert response.status_code == 404
        assert response.json() == {"detail": f"no product with id {product_id!r}"}
