"""/docs and /redoc work offline: the pages load only files the service serves itself (from
the installed fastapi-offline package) and run no inline script, under the service's
Content-Security-Policy (scripts from 'self' only)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api import build_snapshot


class _References(HTMLParser):
    """Every URL a page loads (scripts, styles, icons) and the text of inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.inline_scripts: list[str] = []
        self.in_script = False
        self.script_has_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "spec-url", "data-openapi-url"):
            if values.get(name):
                self.urls.append((tag, str(values[name])))
        if tag == "script":
            self.in_script = True
            self.script_has_src = bool(values.get("src"))
        if any(name.startswith("on") for name in values):
            self.inline_scripts.append(f"event handler on <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and not self.script_has_src and data.strip():
            self.inline_scripts.append(data)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    work: Path = tmp_path_factory.mktemp("docs")
    app = create_app(
        Settings(index_dir=build_snapshot(work), text_embedder="none", events_db="none")
    )
    with TestClient(app) as test_client:
        yield test_client


EXPECTED_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
}


class TestDocsPages:
    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    def test_page_loads_only_same_origin_files(self, client: TestClient, page: str) -> None:
        response = client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        parser = _References()
        parser.feed(response.text)
        assert parser.urls, "the page loads nothing"
        for tag, url in parser.urls:
            # Same origin: a path on this service, never a scheme or a //host.
            assert url.startswith("/") and not url.startswith("//"), (tag, url)
            assert not re.match(r"^[a-z][a-z0-9+.-]*:", url), (tag, url)
        assert "cdn" not in response.text.lower()
        assert "googleapis" not in response.text
        assert parser.inline_scripts == []

    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    def test_every_file_a_page_loads_is_served(self, client: TestClient, page: str) -> None:
        parser = _References()
        parser.feed(client.get(page).text)
        loaded = [url for tag, url in parser.urls if tag in ("script", "link")]
        assert any(url.endswith(".js") for url in loaded)
        for url in loaded:
            response = client.get(url)
            assert response.status_code == 200, url
            suffix = Path(url).suffix
            assert response.headers["content-type"].startswith(EXPECTED_TYPES[suffix]), url
            assert response.headers["x-content-type-options"] == "nosniff"
            assert len(response.content) > 0
        schema_url = next(
            url for tag, url in parser.urls if tag in ("div", "redoc") and "openapi" in url
        )
        assert client.get(schema_url).json()["openapi"].startswith("3.")

    def test_bundles_are_the_real_libraries(self, client: TestClient) -> None:
        swagger = client.get("/docs/assets/swagger-ui-bundle.js")
        redoc = client.get("/docs/assets/redoc.standalone.js")
        assert b"SwaggerUIBundle" in swagger.content
        assert len(swagger.content) > 500_000 and len(redoc.content) > 500_000
        init = client.get("/docs/assets/swagger-init.js").text
        assert "SwaggerUIBundle(" in init and 'getAttribute("data-openapi-url")' in init

    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    def test_page_has_a_policy_allowing_only_own_scripts(
        self, client: TestClient, page: str
    ) -> None:
        policy = client.get(page).headers["content-security-policy"]
        directives = {
            name: value for name, _, value in (part.partition(" ") for part in policy.split("; "))
        }
        assert directives["script-src"] == "'self'"
        assert directives["default-src"] == "'self'"
        assert "unsafe-inline" not in directives["script-src"]
        assert directives["connect-src"] == "'self'"

    @pytest.mark.parametrize("name", ["../app.py", "..%2Fapp.py", "core.py", "nothing.js"])
    def test_only_the_bundled_files_are_served(self, client: TestClient, name: str) -> None:
        assert client.get(f"/docs/assets/{name}").status_code == 404

    def test_docs_are_not_in_the_schema(self, client: TestClient) -> None:
        paths = client.get("/openapi.json").json()["paths"]
        assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]

    def test_pages_follow_the_root_path(self, tmp_path: Path) -> None:
        app = create_app(
            Settings(index_dir=build_snapshot(tmp_path), text_embedder="none", events_db="none")
        )
        with TestClient(app, root_path="/search-api") as client:
            text = client.get("/docs").text
        assert 'href="/search-api/docs/assets/swagger-ui.css"' in text
        assert 'data-openapi-url="/search-api/openapi.json"' in text


CHROMIUM = os.environ.get("PRODUCTSEARCH_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service on a loopback port (uvicorn in a thread), for a real browser."""
    import uvicorn

    work = tmp_path_factory.mktemp("docs-live")
    app = create_app(
        Settings(index_dir=build_snapshot(work), text_embedder="none", events_db="none")
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, or a skip saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        yield chromium
        chromium.close()


class TestDocsInABrowser:
    """Debian's Chromium opens the pages with every request off the service refused (as
    offline): they render, with no Content-Security-Policy violation and no script error."""

    @pytest.mark.parametrize(
        ("page_path", "rendered"),
        [
            ("/docs", ".swagger-ui .opblock-summary-path"),
            ("/redoc", "[data-section-id] h2"),
        ],
    )
    def test_page_renders_offline_under_the_policy(
        self, browser: Any, live_url: str, page_path: str, rendered: str
    ) -> None:
        context = browser.new_context()
        context.set_default_timeout(30_000)
        page = context.new_page()
        errors: list[str] = []
        outside: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console",
            lambda message: (
                errors.append(message.text)
                if message.type == "error" or "Content Security Policy" in message.text
                else None
            ),
        )

        def only_the_service(route: Any) -> None:
            if route.request.url.startswith(live_url + "/"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_service)
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => "
            "console.error('Content Security Policy violation: ' + e.violatedDirective + "
            "' ' + e.blockedURI));"
        )
        page.goto(live_url + page_path)
        page.wait_for_selector(rendered)
        titles = page.locator(rendered).all_inner_texts()
        context.close()
        assert titles, "nothing rendered"
        assert outside == []
        # ReDoc draws a "Redocly" badge from its vendor's CDN (hard-coded, hidden when it does
        # not load): the policy blocks it, which is the policy working, not the page failing.
        badge = "https://cdn.redoc.ly/redoc/logo-mini.svg"
        assert [e for e in errors if badge not in e] == []
