"""The application: start-up, health, docs, middleware, error mapping and settings."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import get_engine
from api.settings import Settings
from search.errors import InvalidRequestError, SnapshotError
from search.tuning import Tuning
from search.types import Product, SearchRequest, SearchResult
from tests.api import PRODUCTS, build_snapshot, write_catalogue


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("app-api"))


@pytest.fixture(scope="module")
def client(snapshot_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(index_dir=snapshot_dir, text_embedder="none"))) as c:
        yield c


@dataclass(frozen=True)
class FakeManifest:
    format_version: int = 1
    snapshot_id: str = "fake-snapshot"
    created_at: str = "2024-01-01T00:00:00Z"
    catalogue_checksum: str = "sha256:0"
    counts: Mapping[str, int] = field(default_factory=lambda: {"products": 0})
    models: Mapping[str, str] = field(default_factory=dict)


class FakeEngine:
    """Stands in for SearchEngine where a test needs a particular engine behaviour."""

    manifest = FakeManifest()
    retrievers: Mapping[str, object] = {"lexical": object()}
    tuning = Tuning()

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.requests: list[SearchRequest] = []

    def __len__(self) -> int:
        return 0

    def facet_names(self) -> list[str]:
        return ["brand"]

    def search(self, request: SearchRequest, tuning: Tuning | None = None) -> SearchResult:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return SearchResult(
            query=request.text, corrected_query=None, total=0, hits=(), facets={}, took_ms=0.0
        )

    def get_product(self, product_id: str) -> Product:
        raise AssertionError("not used")


class TestHealth:
    def test_health_describes_the_snapshot(self, client: TestClient, snapshot_dir: Path) -> None:
        body = client.get("/health").json()

        manifest = json.loads((snapshot_dir / "manifest.json").read_text())
        assert body["status"] == "ok"
        assert body["snapshot_id"] == manifest["snapshot_id"]
        assert body["format_version"] == manifest["format_version"]
        assert body["created_at"] == manifest["created_at"]
        assert body["catalogue_checksum"] == manifest["catalogue_checksum"]
        assert body["products"] == len(PRODUCTS)
        assert body["counts"]["products"] == len(PRODUCTS)
        assert isinstance(body["models"], dict)

    def test_ready_once_started(self, client: TestClient) -> None:
        response = client.get("/ready")

        assert response.status_code == 200
        assert response.json() == {"status": "ready"}

    def test_not_ready_before_start_up(self, snapshot_dir: Path) -> None:
        not_started = TestClient(create_app(Settings(index_dir=snapshot_dir)))

        assert not_started.get("/ready").status_code == 503


class TestDocs:
    def test_swagger_ui(self, client: TestClient) -> None:
        response = client.get("/docs")

        assert response.status_code == 200
        assert "swagger" in response.text.lower()

    def test_openapi_lists_every_route_and_search_parameter(self, client: TestClient) -> None:
        schema = client.get("/openapi.json").json()

        assert set(schema["paths"]) >= {
            "/search",
            "/products/{product_id}",
            "/products/{product_id}/images/{index}",
            "/health",
            "/ready",
            "/suggest",
            "/events",
            "/users/{user_id}",
            "/analytics/queries",
            "/reports/colours",
            "/reports/import",
            "/admin/rules",
            "/admin/weights",
            "/admin/preview",
            "/admin/keys",
        }
        params = {p["name"] for p in schema["paths"]["/search"]["get"]["parameters"]}
        assert params == {
            "q",
            "k",
            "page",
            "brand",
            "category",
            "attr",
            "price_min",
            "price_max",
            "availability",
            "sort",
            "facets",
            "explain",
            "as_you_type",
            "user_id",
            "session_id",
            "channel",
            "colour",
            "currency",
        }
        assert "SearchResponse" in schema["components"]["schemas"]
        assert "ProductPublic" in schema["components"]["schemas"]


class TestRequestId:
    def test_echoes_the_callers_id(self, client: TestClient) -> None:
        response = client.get("/health", headers={"X-Request-ID": "abc-123"})

        assert response.headers["X-Request-ID"] == "abc-123"

    def test_makes_one_when_absent(self, client: TestClient) -> None:
        first = client.get("/health").headers["X-Request-ID"]
        second = client.get("/health").headers["X-Request-ID"]

        assert first and second and first != second

    def test_replaces_a_malformed_id(self, client: TestClient) -> None:
        response = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})

        assert response.headers["X-Request-ID"] != "bad id\twith spaces"

    def test_on_error_responses_too(self, client: TestClient) -> None:
        response = client.get("/products/NOPE", headers={"X-Request-ID": "r-404"})

        assert response.status_code == 404
        assert response.headers["X-Request-ID"] == "r-404"


class TestStartUp:
    def test_given_engine_is_served_without_opening_a_snapshot(self) -> None:
        app = create_app(Settings(index_dir=None, events_db="none"), engine=FakeEngine())  # type: ignore[arg-type]

        with TestClient(app) as client:
            assert client.get("/health").json()["snapshot_id"] == "fake-snapshot"

    def test_no_snapshot_configured_fails(self, caplog: pytest.LogCaptureFixture) -> None:
        app = create_app(Settings(index_dir=None))

        with pytest.raises(SnapshotError, match="PRODUCTSEARCH_INDEX_DIR"), TestClient(app):
            pass

    def test_missing_snapshot_fails(self, tmp_path: Path) -> None:
        app = create_app(Settings(index_dir=tmp_path / "nowhere"))

        with pytest.raises(SnapshotError), TestClient(app):
            pass

    @pytest.mark.parametrize("damage", ["garbage_manifest", "truncated_files", "empty_dir"])
    def test_corrupt_snapshot_is_refused_with_a_log_line(
        self,
        snapshot_dir: Path,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
        damage: str,
    ) -> None:
        broken = tmp_path / "broken"
        broken.mkdir()
        if damage != "empty_dir":
            for source in snapshot_dir.iterdir():
                if source.is_file():
                    (broken / source.name).write_bytes(source.read_bytes())
        if damage == "garbage_manifest":
            (broken / "manifest.json").write_text("{not json")
        elif damage == "truncated_files":
            for path in broken.iterdir():
                if path.name != "manifest.json":
                    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
        app = create_app(Settings(index_dir=broken))

        with (
            caplog.at_level(logging.ERROR, logger="productsearch.api"),
            pytest.raises(SnapshotError),
            TestClient(app),
        ):
            pass

        messages = [r.getMessage() for r in caplog.records if r.name == "productsearch.api"]
        assert any("refusing to start" in m and str(broken) in m for m in messages)


class TestErrorMapping:
    def test_engine_invalid_request_is_422_naming_the_field(self, snapshot_dir: Path) -> None:
        fake = FakeEngine(InvalidRequestError("q", "too many words"))
        app = create_app(Settings(index_dir=snapshot_dir, text_embedder="none"))
        app.dependency_overrides[get_engine] = lambda: fake

        with TestClient(app) as client:
            response = client.get("/search", params={"q": "a b c"})

        assert response.status_code == 422
        assert response.json() == {
            "detail": [{"loc": ["query", "q"], "msg": "too many words", "type": "value_error"}]
        }

    def test_request_reaches_the_engine_whole(self, snapshot_dir: Path) -> None:
        fake = FakeEngine()
        app = create_app(Settings(index_dir=snapshot_dir, text_embedder="none"))
        app.dependency_overrides[get_engine] = lambda: fake

        with TestClient(app) as client:
            params: dict[str, Any] = {
                "q": "oak ",
                "k": 5,
                "page": 2,
                "brand": ["Casa", " Casa "],
                "category": ["Furniture>Chairs", "Home > Textiles"],
                "attr": ["material:oak", "material: walnut", "seats:2"],
                "price_min": 1,
                "price_max": 100.5,
                "availability": ["in_stock", "preorder"],
                "sort": "price_desc",
                "facets": "brand",
                "explain": "true",
                "as_you_type": "false",
                "user_id": "u",
                "session_id": "s",
                "channel": "web",
            }
            assert client.get("/search", params=params).status_code == 200

        (request,) = fake.requests
        assert request.text == "oak "
        assert (request.k, request.page) == (5, 2)
        assert request.filters.brands == ("Casa",)
        assert request.filters.categories == (("Furniture", "Chairs"), ("Home", "Textiles"))
        assert dict(request.filters.attributes) == {"material": ("oak", "walnut"), "seats": ("2",)}
        assert (request.filters.price_min, request.filters.price_max) == (1.0, 100.5)
        assert [a.value for a in request.filters.availability] == ["in_stock", "preorder"]
        assert request.sort.value == "price_desc"
        assert request.facets == ("brand",)
        assert request.explain is True
        assert request.as_you_type is False
        assert (request.user_id, request.session_id, request.channel) == ("u", "s", "web")


class TestCors:
    def test_allowed_origin_gets_cors_headers(self, snapshot_dir: Path) -> None:
        settings = Settings(
            index_dir=snapshot_dir, text_embedder="none", cors_origins=["https://shop.example"]
        )
        with TestClient(create_app(settings)) as client:
            response = client.get("/health", headers={"Origin": "https://shop.example"})

        assert response.headers["access-control-allow-origin"] == "https://shop.example"

    def test_no_cors_by_default(self, client: TestClient) -> None:
        response = client.get("/health", headers={"Origin": "https://shop.example"})

        assert "access-control-allow-origin" not in response.headers


class TestSettings:
    @pytest.fixture(autouse=True)
    def clean_env(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.chdir(tmp_path)  # no stray ./.env
        for name in ("INDEX_DIR", "TEXT_EMBEDDER", "MAX_K", "PORT", "CORS_ORIGINS", "CONFIG"):
            monkeypatch.delenv(f"PRODUCTSEARCH_{name}", raising=False)

    def test_defaults(self) -> None:
        settings = Settings()

        assert settings.index_dir is None
        assert settings.text_embedder == "auto"
        assert settings.max_k == 250
        assert (settings.host, settings.port, settings.log_level) == ("127.0.0.1", 8000, "info")
        assert settings.cors_origins == []

    def test_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PRODUCTSEARCH_INDEX_DIR", "/srv/snap")
        monkeypatch.setenv("PRODUCTSEARCH_TEXT_EMBEDDER", "None")
        monkeypatch.setenv("PRODUCTSEARCH_MAX_K", "40")
        monkeypatch.setenv("PRODUCTSEARCH_CORS_ORIGINS", "https://a.example, https://b.example")

        settings = Settings()

        assert settings.index_dir == Path("/srv/snap")
        assert settings.text_embedder == "none"
        assert settings.max_k == 40
        assert settings.cors_origins == ["https://a.example", "https://b.example"]

    def test_cors_origins_as_json(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PRODUCTSEARCH_CORS_ORIGINS", '["https://a.example"]')

        assert Settings().cors_origins == ["https://a.example"]

    def test_dotenv_file(self, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text("PRODUCTSEARCH_PORT=9001\n")

        assert Settings().port == 9001

    @pytest.mark.parametrize(
        ("name", "text"),
        [
            ("service.toml", 'max_k = 33\nindex_dir = "/srv/from-file"\n'),
            ("service.json", '{"max_k": 33, "index_dir": "/srv/from-file"}'),
            ("service.env", "PRODUCTSEARCH_MAX_K=33\nPRODUCTSEARCH_INDEX_DIR=/srv/from-file\n"),
        ],
    )
    def test_config_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, text: str
    ) -> None:
        (tmp_path / name).write_text(text)
        monkeypatch.setenv("PRODUCTSEARCH_CONFIG", str(tmp_path / name))
        monkeypatch.setenv("PRODUCTSEARCH_INDEX_DIR", "/srv/from-env")

        settings = Settings()

        assert settings.max_k == 33
        assert settings.index_dir == Path("/srv/from-env")  # the environment wins

    def test_missing_config_file_is_an_error(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("PRODUCTSEARCH_CONFIG", str(tmp_path / "absent.toml"))

        with pytest.raises(FileNotFoundError, match="PRODUCTSEARCH_CONFIG"):
            Settings()

    @pytest.mark.parametrize(("name", "value"), [("text_embedder", "bert"), ("max_k", 0)])
    def test_invalid_values_are_refused(self, name: str, value: object) -> None:
        with pytest.raises(ValueError, match=name):
            Settings(**{name: value})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def minilm_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from indexer.build import BuildConfig, build_from_catalogue

    work = tmp_path_factory.mktemp("semantic-api")
    catalogue = write_catalogue(work / "catalogue.jsonl")
    result = build_from_catalogue(
        catalogue, work / "snapshot", config=BuildConfig(embedder="minilm")
    )
    return result.snapshot_dir


@pytest.mark.slow
class TestSemantic:
    """With the packaged all-MiniLM-L6-v2: ``text_embedder`` turns semantic retrieval on and off."""

    def test_auto_uses_the_manifests_embedder(self, minilm_snapshot: Path) -> None:
        settings = Settings(index_dir=minilm_snapshot, text_embedder="auto")
        with TestClient(create_app(settings)) as client:
            health = client.get("/health").json()
            body = client.get("/search", params={"q": "couch", "explain": True}).json()

        assert health["models"]["text_embedder"] == "minilm"
        assert "semantic" in health["retrievers"]
        assert body["hits"][0]["id"].startswith("SOFA-")
        found_by = {t["retriever"] for t in body["hits"][0]["explanation"]["retrievers"]}
        assert "semantic" in found_by

    def test_none_turns_semantic_retrieval_off(self, minilm_snapshot: Path) -> None:
        settings = Settings(index_dir=minilm_snapshot, text_embedder="none")
        with TestClient(create_app(settings)) as client:
            health = client.get("/health").json()
            body = client.get("/search", params={"q": "couch", "explain": True}).json()

        assert "semantic" not in health["retrievers"]
        for hit in body["hits"]:
            assert "semantic" not in {t["retriever"] for t in hit["explanation"]["retrievers"]}
