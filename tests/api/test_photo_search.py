"""Photo search end to end: photo vectors built into the snapshot (weight-free descriptor
backend), ``POST /search/image`` with and without text, ``GET /products/{id}/similar``, and
clear errors for unusable uploads."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from api.app import create_app
from api.settings import Settings
from indexer.build import BuildConfig, build_snapshot
from merchandising.experiments import experiment_from_dict
from search.types import Product

SHAPES = {"shirt": "polygon", "lamp": "ellipse"}
COLOURS = {"red": (200, 25, 30), "black": (20, 20, 22), "blue": (30, 60, 170)}


def draw(kind: str, rgb: tuple[int, int, int], size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(image)
    if kind == "shirt":
        d.polygon(
            [(20, 15), (76, 15), (90, 35), (74, 42), (74, 88), (22, 88), (22, 42), (6, 35)],
            fill=rgb,
        )
    else:
        d.ellipse((30, 10, 66, 46), fill=rgb)
        d.rectangle((45, 46, 51, 80), fill=rgb)
        d.rectangle((30, 80, 66, 88), fill=rgb)
    return image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    work = tmp_path_factory.mktemp("photo-search")
    products = []
    for kind in SHAPES:
        for colour, rgb in COLOURS.items():
            path = work / f"{kind}-{colour}.png"
            draw(kind, rgb).save(path)
            products.append(Product(f"{kind}-{colour}", f"{colour} {kind}", images=(str(path),)))
    products.append(Product("no-photo", "plain shirt"))
    build_snapshot(
        products, work / "snap", config=BuildConfig(embedder="none", image_embedder="descriptor")
    )
    app = create_app(Settings(index_dir=work / "snap", text_embedder="none", events_db="none"))
    with TestClient(app) as test_client:
        yield test_client


def ids(response_json: dict[str, object]) -> list[str]:
    return [h["id"] for h in response_json["hits"]]  # type: ignore[attr-defined, index]


class TestPhotoSearch:
    def test_a_photo_finds_the_same_shape_and_colour_first(self, client: TestClient) -> None:
        photo = png(draw("shirt", (195, 30, 35), size=120))  # not a catalogue photo
        response = client.post("/search/image", files={"image": ("me.png", photo, "image/png")})
        assert response.status_code == 200, response.text
        found = ids(response.json())
        assert found[0] == "shirt-red"
        assert "no-photo" not in found

    def test_text_narrows_the_photo(self, client: TestClient) -> None:
        photo = png(draw("shirt", (195, 30, 35)))
        response = client.post(
            "/search/image",
            files={"image": ("me.png", photo, "image/png")},
            data={"q": "in black"},
        )
        assert response.status_code == 200, response.text
        assert ids(response.json())[0] == "shirt-black"

    def test_similar_products_leave_the_product_out(self, client: TestClient) -> None:
        body = client.get("/products/lamp-blue/similar", params={"k": 3}).json()
        found = ids(body)
        assert "lamp-blue" not in found
        # The weight-free descriptor weighs colour and layout: the nearest share one of them.
        assert found[0].startswith("lamp-") or found[0].endswith("-blue")
        assert any(f.startswith("lamp-") for f in found)

    def test_similar_without_photo_is_422(self, client: TestClient) -> None:
        response = client.get("/products/no-photo/similar")
        assert response.status_code == 422
        assert "no readable photo" in response.text

    def test_similar_unknown_product_is_404(self, client: TestClient) -> None:
        assert client.get("/products/nope/similar").status_code == 404

    @pytest.mark.parametrize(
        ("payload", "status"),
        [(b"definitely not an image", 415), (png(draw("lamp", (1, 2, 3)))[:60], 422), (b"", 422)],
    )
    def test_unusable_uploads(self, client: TestClient, payload: bytes, status: int) -> None:
        response = client.post("/search/image", files={"image": ("x.png", payload, "image/png")})
        assert response.status_code == status, response.text
        assert response.json()["detail"]


class TestPhotoSearchExperiments:
    def test_a_shopper_in_an_experiment_gets_their_arm(self, client: TestClient) -> None:
        store = client.app.state.config_store  # type: ignore[attr-defined]
        experiment = experiment_from_dict(
            {
                "id": "photo-exp",
                "variants": [
                    {"name": "control", "share": 0.5},
                    {"name": "b", "share": 0.5, "weights": {"colour_rerank": 0.0}},
                ],
            }
        )
        store.put_experiment(experiment, "test")
        try:
            photo = png(draw("shirt", (195, 30, 35)))
            arms = set()
            for shopper in ("u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"):
                response = client.post(
                    "/search/image",
                    files={"image": ("me.png", photo, "image/png")},
                    data={"user_id": shopper, "channel": "app"},
                )
                assert response.status_code == 200, response.text
                body = response.json()
                typed = client.get("/search", params={"q": "shirt", "user_id": shopper}).json()
                assert body["variants"] == typed["variants"]
                arms.add(body["variants"]["photo-exp"])
                assert ids(body)[0] == "shirt-red"
            assert arms == {"control", "b"}
            anonymous = client.post(
                "/search/image", files={"image": ("me.png", photo, "image/png")}
            )
            assert anonymous.json()["variants"] == {}
        finally:
            store.delete_experiment("photo-exp", "test")
