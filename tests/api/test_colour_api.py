"""Colour search through the HTTP API: ``colour=``, colour words, the colour facet, product
colours and the colour report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api import build_snapshot


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    snapshot: Path = build_snapshot(tmp_path_factory.mktemp("colour-api"))
    with TestClient(create_app(Settings(index_dir=snapshot, text_embedder="none"))) as test_client:
        yield test_client


def hit_ids(body: dict[str, object]) -> list[str]:
    return [h["id"] for h in body["hits"]]  # type: ignore[attr-defined, index]


class TestColourSearchApi:
    def test_colour_word_ranks_matching_colour_first(self, client: TestClient) -> None:
        body = client.get("/search", params={"q": "grey sofa", "as_you_type": "false"}).json()
        assert hit_ids(body)[0] == "SOFA-1"  # the grey one of three sofas

    def test_colour_parameter_by_name_and_hex(self, client: TestClient) -> None:
        by_name = client.get("/search", params={"q": "sofa", "colour": "szary"}).json()
        assert hit_ids(by_name) == ["SOFA-1"]
        by_hex = client.get("/search", params={"q": "sofa", "colour": "#808080"}).json()
        assert hit_ids(by_hex) == ["SOFA-1"]

    def test_colour_facet_has_swatches(self, client: TestClient) -> None:
        body = client.get("/search", params={"q": "", "facets": "colour"}).json()
        buckets = body["facets"]["colour"]
        assert {b["value"] for b in buckets} >= {"grey", "brown", "blue", "beige"}
        assert all(b["swatch"].startswith("#") and len(b["swatch"]) == 7 for b in buckets)

    def test_facet_value_filters(self, client: TestClient) -> None:
        body = client.get("/search", params={"q": "", "colour": "blue", "k": 50}).json()
        ids = hit_ids(body)
        assert ids and all(
            any(c["family"] == "blue" for c in h["colours"])
            for h in body["hits"]  # type: ignore[union-attr]
        )
        assert body["total"] == len(ids)

    def test_bad_colour_is_422_naming_the_field(self, client: TestClient) -> None:
        response = client.get("/search", params={"q": "sofa", "colour": "blurple"})
        assert response.status_code == 422
        detail = response.json()["detail"][0]
        assert detail["loc"][-1] == "colour"
        assert "blurple" in detail["msg"]

    def test_product_lists_colours_main_first(self, client: TestClient) -> None:
        body = client.get("/products/SOFA-1").json()
        assert body["colours"][0]["name"] == "grey"
        assert body["colours"][0]["source"] == "text"
        assert set(body["colours"][0]) == {"name", "family", "hex", "source", "share", "confidence"}

    def test_explain_shows_colour(self, client: TestClient) -> None:
        body = client.get("/search", params={"q": "grey sofa", "explain": "true"}).json()
        stages = [a["stage"] for a in body["hits"][0]["explanation"]["adjustments"]]
        assert "colour" in stages

    def test_colour_report_needs_an_admin_key(self, tmp_path: Path) -> None:
        snapshot = build_snapshot(tmp_path)
        app = create_app(Settings(index_dir=snapshot, text_embedder="none", events_db="none"))
        with TestClient(app) as client:
            assert (
                client.get("/reports/colours").status_code == 401
            )  # no key given: admin routes never open
            _, token = app.state.security.keys.create("merchandiser", "admin")
            _, search_token = app.state.security.keys.create("storefront", "search")
            search_only = {"Authorization": f"Bearer {search_token}"}
            assert client.get("/reports/colours", headers=search_only).status_code == 403
            response = client.get("/reports/colours", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        body = response.json()
        assert set(body) >= {"conflicts", "photo_errors", "unrecognised", "products_with_colour"}
        assert body["products_with_colour"] >= 4
