"""``GET /products/{id}/images/{n}``: local product photos served, remote ones linked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.settings import Settings
from indexer.build import BuildConfig, build_snapshot
from search.types import Product


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("images-api")
    photo = root / "chair.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(photo)
    products = [
        Product(id="CHAIR 1", title="Red chair", images=(str(photo), str(root / "gone.png"))),
        Product(id="LAMP-1", title="Desk lamp", images=("https://shop.example/lamp.jpg",)),
    ]
    snapshot = root / "snapshot"
    # The photos' folder is the image root the service may serve from (issue 15 §1).
    build_snapshot(
        products, snapshot, config=BuildConfig(embedder="none", image_roots=(str(root),))
    )
    with TestClient(create_app(Settings(index_dir=snapshot, text_embedder="none"))) as test_client:
        yield test_client


class TestImages:
    def test_local_images_get_service_urls(self, client: TestClient) -> None:
        body = client.get("/products/CHAIR%201").json()
        assert body["images"] == ["/products/CHAIR%201/images/0", "/products/CHAIR%201/images/1"]
        hit = client.get("/search", params={"q": "red chair"}).json()["hits"][0]
        assert hit["image"] == "/products/CHAIR%201/images/0"

    def test_local_image_is_served(self, client: TestClient) -> None:
        response = client.get("/products/CHAIR%201/images/0")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content[:8] == b"\x89PNG\r\n\x1a\n"

    def test_remote_images_are_linked_not_served(self, client: TestClient) -> None:
        assert client.get("/products/LAMP-1").json()["images"] == ["https://shop.example/lamp.jpg"]
        assert client.get("/products/LAMP-1/images/0").status_code == 404

    @pytest.mark.parametrize(
        ("path", "fragment"),
        [
            ("/products/CHAIR%201/images/5", "has no image 5"),
            ("/products/CHAIR%201/images/1", "not a local file"),
            ("/products/NOPE/images/0", "no product with id 'NOPE'"),
        ],
    )
    def test_missing_images_are_404(self, client: TestClient, path: str, fragment: str) -> None:
        response = client.get(path)
        assert response.status_code == 404
        assert fragment in response.json()["detail"]

    def test_bad_index_is_422(self, client: TestClient) -> None:
        assert client.get("/products/CHAIR%201/images/first").status_code == 422
