"""The InstantSearch.js example storefront (``examples/instantsearch``, built with the real
``instantsearch.js``, ``algoliasearch`` and ``search-insights`` packages from npm) against the
service's Algolia-compatible routes, in Chromium.

The storefront is served from its own origin (a static file server) and the service from
another, so the browser's CORS rules apply as in a shop; keys are required and the page uses a
search key. What the shopper sees is asserted: typing changes the hits, highlighting marks the
matched words, refining a brand, a category level or a price range narrows the hits, page 2
differs, and clicking a product sends an Insights event that lands in the event store,
attributed to the search it came from. No request leaves the two origins (no CDN).

Skipped, saying why, without node and npm or without the example's ``node_modules``
(``.ci/run`` installs both: ``apt-get install nodejs npm``, ``npm ci``).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest

from api.app import create_app
from api.security import KeyStore
from api.settings import Settings
from indexer.build import BuildConfig, build_snapshot
from search.types import Product
from tests.browser.conftest import REPO, TIMEOUT_MS, _free_socket, draw, shoot

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Page, Request

EXAMPLE = REPO / "examples" / "instantsearch"

#: (id, title, brand, category path, colour, price): 14 products, 4 pages of 4.
ROWS: tuple[tuple[str, str, str, tuple[str, ...], str, float], ...] = (
    ("shirt-red", "Red cotton shirt", "Fjord", ("Clothing", "Men", "Shirts"), "red", 29.0),
    ("shirt-blue", "Blue linen shirt", "Fjord", ("Clothing", "Men", "Shirts"), "blue", 31.0),
    ("shirt-black", "Black oxford shirt", "Denimo", ("Clothing", "Men", "Shirts"), "black", 35.0),
    ("dress-red", "Red summer dress", "Fjord", ("Clothing", "Women", "Dresses"), "red", 59.0),
    ("dress-blue", "Blue wrap dress", "Denimo", ("Clothing", "Women", "Dresses"), "blue", 65.0),
    ("lamp-red", "Red table lamp", "Lumo", ("Home", "Lighting", "Lamps"), "red", 49.0),
    ("lamp-blue", "Blue table lamp", "Lumo", ("Home", "Lighting", "Lamps"), "blue", 52.0),
    ("lamp-black", "Black desk lamp", "Lumo", ("Home", "Lighting", "Lamps"), "black", 55.0),
    ("floor-lamp", "Black floor lamp", "Nordlys", ("Home", "Lighting", "Lamps"), "black", 120.0),
    ("bulb", "LED bulb, warm white", "Lumo", ("Home", "Lighting", "Bulbs"), "white", 9.0),
    ("sofa-grey", "Grey corner sofa", "Nordhem", ("Home", "Furniture", "Sofas"), "grey", 899.0),
    ("sofa-blue", "Blue velvet sofa", "Nordhem", ("Home", "Furniture", "Sofas"), "blue", 949.0),
    (
        "chair-black",
        "Black dining chair",
        "Woodly",
        ("Home", "Furniture", "Chairs"),
        "black",
        129.0,
    ),
    (
        "chair-brown",
        "Walnut dining chair",
        "Woodly",
        ("Home", "Furniture", "Chairs"),
        "brown",
        139.0,
    ),
)
BY_ID = {row[0]: row for row in ROWS}
RGB = {"red": (200, 25, 30), "blue": (30, 60, 170), "black": (20, 20, 22)}


def _node_or_skip() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed (apt-get install nodejs npm; .ci/run does)"
        )
    if not (EXAMPLE / "node_modules" / "instantsearch.js").is_dir():
        pytest.skip(
            "the example's npm packages are not installed: run `npm ci` in examples/instantsearch "
            "(.ci/run does)"
        )


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The example's bundle, built now by its own ``npm run build`` (esbuild)."""
    _node_or_skip()
    built = subprocess.run(
        ["npm", "run", "--silent", "build"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    out = EXAMPLE / "dist" / "app.js"
    assert out.is_file()
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's output."""


@dataclass
class Shop:
    """The service, the storefront's origin and what the tests read."""

    app: FastAPI
    api: str
    storefront: str
    search_token: str

    def page_url(self) -> str:
        host = self.api.removeprefix("http://")
        query = urlencode({"host": host, "protocol": "http", "key": self.search_token})
        return f"{self.storefront}/index.html?{query}"


@pytest.fixture(scope="module")
def shop(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The storefront on one origin and the service (keys required, CORS for the storefront's
    origin) on another."""
    import uvicorn

    work = tmp_path_factory.mktemp("instantsearch")
    products = []
    for product_id, title, brand, path, colour, price in ROWS:
        images: tuple[str, ...] = ()
        if colour in RGB and product_id.startswith(("shirt", "lamp")):
            photo = work / f"{product_id}.png"
            draw("shirt" if product_id.startswith("shirt") else "lamp", RGB[colour]).save(photo)
            images = (str(photo),)
        products.append(
            Product(
                id=product_id,
                title=title,
                brand=brand,
                categories=(path,),
                colours=(colour,),
                price=price,
                currency="EUR",
                images=images,
                lang="en",
            )
        )
    build_snapshot(
        products,
        work / "snapshot",
        config=BuildConfig(embedder="none", image_embedder="descriptor", image_roots=(str(work),)),
    )
    static = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(EXAMPLE))
    )
    storefront = f"http://127.0.0.1:{static.server_address[1]}"
    threading.Thread(target=static.serve_forever, daemon=True).start()

    keys = KeyStore(work / "keys.sqlite3")
    _, search_token = keys.create("storefront", "search", rate_per_minute=100_000, burst=10_000)
    keys.close()
    settings = Settings(
        index_dir=work / "snapshot",
        text_embedder="none",
        events_db=str(work / "events.sqlite3"),
        events_synchronous="NORMAL",
        keys_db=work / "keys.sqlite3",
        open_mode=False,
        cors_origins=[storefront],
        client_rate_per_minute=0,
        behaviour_refresh_s=3600,
        log_level="warning",
    )
    app = create_app(settings)
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    try:
        yield Shop(app, f"http://127.0.0.1:{sock.getsockname()[1]}", storefront, search_token)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        static.shutdown()


@pytest.fixture
def shop_page(page: Page, shop: Shop) -> Iterator[Page]:
    """The storefront loaded with its first page of hits; fails the test if any request went
    anywhere but the storefront's and the service's origins."""
    elsewhere: list[str] = []

    def check(request: Request) -> None:
        if not request.url.startswith((shop.storefront, shop.api, "data:", "blob:")):
            elsewhere.append(request.url)

    page.on("request", check)
    page.goto(shop.page_url())
    page.wait_for_selector(".ais-Hits-item article.product", timeout=TIMEOUT_MS)
    yield page
    assert not elsewhere, f"requests outside the two origins: {elsewhere}"


def hit_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        ".ais-Hits-item article.product", "items => items.map(a => a.dataset.id)"
    )


def wait_for_hits(page: Page, predicate: str) -> list[str]:
    """Wait until the shown hits' ids satisfy a JavaScript predicate over ``ids``."""
    page.wait_for_function(
        "() => { const ids = [...document.querySelectorAll('.ais-Hits-item article.product')]"
        f".map(a => a.dataset.id); return ids.length > 0 && ({predicate}); }}",
        timeout=TIMEOUT_MS,
    )
    return hit_ids(page)


def wait_for_change(page: Page, before: list[str]) -> list[str]:
    return wait_for_hits(page, f"ids.join() !== {before!r}.join()".replace("'", '"'))


def total(page: Page) -> int:
    text = page.inner_text("#stats")
    return int(text.split()[0].replace(",", ""))


class TestStorefront:
    def test_typing_changes_the_hits_and_marks_the_words(
        self, shop_page: Page, screenshots: Path
    ) -> None:
        page = shop_page
        first = hit_ids(page)
        assert len(first) == 4 and total(page) == len(ROWS)
        shoot(page, screenshots, "instantsearch-1-start")
        page.locator(".ais-SearchBox-input").press_sequentially("lamp", delay=40)
        lamps = wait_for_hits(page, "ids.every(id => id.includes('lamp'))")
        assert lamps != first and total(page) == 4
        marks = page.locator(".ais-Hits-item mark.ais-Highlight-highlighted")
        marks.first.wait_for(timeout=TIMEOUT_MS)
        assert {m.lower() for m in marks.all_inner_texts()} == {"lamp"}
        # Photos stored with the catalogue come through the service under the search key.
        page.wait_for_function(
            "() => [...document.querySelectorAll('img.thumb')].some(i => i.naturalWidth > 0)",
            timeout=TIMEOUT_MS,
        )
        shoot(page, screenshots, "instantsearch-2-typed")

    def test_refining_a_brand_narrows_the_hits(self, shop_page: Page, screenshots: Path) -> None:
        page = shop_page
        page.locator("#brand .ais-RefinementList-item", has_text="Lumo").locator("input").check()
        ids = wait_for_hits(page, "ids.every(id => id.includes('lamp') || id === 'bulb')")
        assert total(page) == 4 and all(BY_ID[i][2] == "Lumo" for i in ids)
        # Brands stay selectable as alternatives (a disjunctive facet): add another.
        page.locator("#brand .ais-RefinementList-item", has_text="Nordlys").locator("input").check()
        page.wait_for_function(
            "() => document.querySelector('#stats').innerText.startsWith('5 ')",
            timeout=TIMEOUT_MS,
        )
        page.locator("#colour .ais-RefinementList-item", has_text="black").locator("input").check()
        ids = wait_for_hits(page, "ids.length === 2")
        assert set(ids) == {"lamp-black", "floor-lamp"}
        shoot(page, screenshots, "instantsearch-3-brand-colour")

    def test_the_hierarchical_menu(self, shop_page: Page, screenshots: Path) -> None:
        page = shop_page
        menu = page.locator("#categories")
        menu.locator(".ais-HierarchicalMenu-link", has_text="Home").click()
        lighting = menu.locator(".ais-HierarchicalMenu-link", has_text="Lighting")
        lighting.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_function(
            "() => document.querySelector('#stats').innerText.startsWith('9 ')",
            timeout=TIMEOUT_MS,
        )
        # The other root stays listed with its count (the parent level's own query).
        assert menu.locator(".ais-HierarchicalMenu-link", has_text="Clothing").count() == 1
        lighting.click()
        page.locator("#categories .ais-HierarchicalMenu-link", has_text="Bulbs").wait_for(
            timeout=TIMEOUT_MS
        )
        ids = wait_for_hits(page, "ids.every(id => id.includes('lamp') || id === 'bulb')")
        assert total(page) == 5 and all(BY_ID[i][3][:2] == ("Home", "Lighting") for i in ids)
        shoot(page, screenshots, "instantsearch-4-categories")

    def test_the_price_range_narrows(self, shop_page: Page, screenshots: Path) -> None:
        page = shop_page
        # The range's bounds come from the price facet's statistics.
        low = page.locator("#price .ais-RangeInput-input--min")
        assert low.get_attribute("placeholder") == "9"
        low.fill("40")
        page.fill("#price .ais-RangeInput-input--max", "60")
        page.click("#price .ais-RangeInput-submit")
        page.wait_for_function(
            "() => document.querySelector('#stats').innerText.startsWith('4 ')",
            timeout=TIMEOUT_MS,
        )
        prices = [float(p) for p in page.eval_on_selector_all(
            ".ais-Hits-item .price", "ps => ps.map(p => p.dataset.price)"
        )]  # fmt: skip
        assert prices and all(40 <= p <= 60 for p in prices)
        shoot(page, screenshots, "instantsearch-5-price")

    def test_page_two_differs(self, shop_page: Page, screenshots: Path) -> None:
        page = shop_page
        first = hit_ids(page)
        page.locator("#pagination .ais-Pagination-item--page a", has_text="2").click()
        second = wait_for_change(page, first)
        assert len(second) == 4 and not set(first) & set(second)
        shoot(page, screenshots, "instantsearch-6-page-2")

    def test_a_click_sends_an_event_that_lands_in_the_store(
        self, shop_page: Page, shop: Shop, screenshots: Path
    ) -> None:
        page = shop_page
        page.locator(".ais-SearchBox-input").press_sequentially("shirt", delay=40)
        ids = wait_for_hits(page, "ids.every(id => id.startsWith('shirt'))")
        chosen = ids[1]
        page.locator(f'article.product[data-id="{chosen}"] button.view').click()
        store = shop.app.state.event_store
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        clicks: list[Any] = []
        while not clicks and time.monotonic() < deadline:
            clicks = [e for e in store.scan() if e.type.value == "click" and e.product_id == chosen]
            time.sleep(0.1)
        shoot(page, screenshots, "instantsearch-7-clicked")
        assert clicks, "the click did not reach the event store"
        (click,) = clicks
        # Attributed to the search answer it came from: its query and the hit's position.
        assert click.query_id is not None and click.query == "shirt" and click.position == 2
        assert click.session_id.startswith("anonymous-") and click.user_id == click.session_id
