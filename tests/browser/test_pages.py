"""How the pages are served (``api.routes.pages``), without a browser: which key the storefront
carries, security headers, and the assets folder's limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.pages import STOREFRONT_KEY_ENV, WEB_DIR
from api.security import KeyStore
from api.settings import Settings
from tests.api import build_snapshot
from tests.browser.conftest import BrowserSettings

KEY_META = re.compile(r'<meta name="productsearch-search-key" content="([^"]*)">')


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("pages"))


def client_for(snapshot_dir: Path, **settings: object) -> Iterator[TestClient]:
    app = create_app(
        BrowserSettings(index_dir=snapshot_dir, text_embedder="none", events_db="none", **settings)  # type: ignore[arg-type]
    )
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def open_client(snapshot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """A fresh install in open mode: no key at all, search open."""
    monkeypatch.delenv(STOREFRONT_KEY_ENV, raising=False)
    yield from client_for(snapshot_dir, open_mode=True)


def served_key(client: TestClient) -> str:
    response = client.get("/storefront")
    assert response.status_code == 200
    match = KEY_META.search(response.text)
    assert match is not None
    return match.group(1)


class TestStorefrontKey:
    def test_without_keys_the_page_carries_none_and_search_is_open(
        self, open_client: TestClient
    ) -> None:
        assert served_key(open_client) == ""
        assert open_client.get("/search", params={"q": "sofa"}).status_code == 200

    def test_a_search_key_from_the_settings_is_embedded(self, open_client: TestClient) -> None:
        security = open_client.app.state.security  # type: ignore[attr-defined]
        _, token = security.keys.create("storefront", "search")
        open_client.app.state.settings.storefront_key = token  # type: ignore[attr-defined]

        assert served_key(open_client) == token

    def test_a_search_key_from_the_environment_is_embedded(
        self, snapshot_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The environment variable is read with the other settings (one source of truth).
        keys = KeyStore(tmp_path / "keys.sqlite3")
        _, token = keys.create("shop", "search")
        keys.close()
        monkeypatch.setenv(STOREFRONT_KEY_ENV, token)
        monkeypatch.setenv("PRODUCTSEARCH_KEYS_DB", str(tmp_path / "keys.sqlite3"))
        app = create_app(Settings(index_dir=snapshot_dir, text_embedder="none", events_db="none"))
        with TestClient(app) as client:
            assert served_key(client) == token

    def test_an_admin_key_is_never_embedded(
        self, open_client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        _, token = open_client.app.state.security.keys.create("oops", "admin")  # type: ignore[attr-defined]
        open_client.app.state.settings.storefront_key = token  # type: ignore[attr-defined]

        assert served_key(open_client) == ""
        assert token not in open_client.get("/storefront").text
        assert "refusing to put it in a public page" in caplog.text

    @pytest.mark.parametrize("revoked", [True, False], ids=["revoked", "unknown"])
    def test_a_dead_key_is_not_embedded(self, open_client: TestClient, revoked: bool) -> None:
        keys = open_client.app.state.security.keys  # type: ignore[attr-defined]
        key, token = keys.create("old", "search")
        if revoked:
            keys.revoke(key.id)
        else:
            token = token[:-4] + "AAAA"
        open_client.app.state.settings.storefront_key = token  # type: ignore[attr-defined]

        assert served_key(open_client) == ""


class TestServing:
    def test_the_root_redirects_to_the_storefront(self, open_client: TestClient) -> None:
        response = open_client.get("/")

        assert response.status_code == 307
        assert response.headers["location"] == "/storefront"

    @pytest.mark.parametrize("path", ["/storefront", "/console"])
    def test_pages_are_locked_down(self, open_client: TestClient, path: str) -> None:
        response = open_client.get(path)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["cache-control"] == "no-store"
        assert "<script>" not in response.text  # no inline script for the policy to allow

    def test_the_console_carries_no_key(self, open_client: TestClient) -> None:
        key, token = open_client.app.state.security.keys.create("merch", "admin")  # type: ignore[attr-defined]
        open_client.app.state.settings.storefront_key = token  # type: ignore[attr-defined]

        page = open_client.get("/console").text
        assert token not in page and key.id not in page

    @pytest.mark.parametrize(
        ("name", "media_type"),
        [
            ("style.css", "text/css"),
            ("common.js", "text/javascript"),
            ("storefront.js", "text/javascript"),
            ("console.js", "text/javascript"),
        ],
    )
    def test_assets_are_served_with_their_type(
        self, open_client: TestClient, name: str, media_type: str
    ) -> None:
        response = open_client.get(f"/web/{name}")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)
        assert response.content == (WEB_DIR / name).read_bytes()

    @pytest.mark.parametrize(
        "path",
        ["/web/nope.js", "/web/storefront.html", "/web/..%2Fapp.py", "/web/%2E%2E%2Fsettings.py"],
    )
    def test_nothing_else_is_served_from_the_folder(
        self, open_client: TestClient, path: str
    ) -> None:
        assert open_client.get(path).status_code == 404

    def test_the_pages_are_not_in_the_api_schema(self, open_client: TestClient) -> None:
        paths = open_client.get("/openapi.json").json()["paths"]

        assert not {"/", "/storefront", "/console", "/web/{name}"} & set(paths)
