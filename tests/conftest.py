"""Shared fixtures of the search-core tests: a small catalogue and a lexical-only snapshot.

Fixture names carry a ``core_`` prefix so they never shadow the fixtures of ``tests/api`` or
``tests/indexer`` (``snapshot_dir``, ``client``, ``catalogue``...).

Every test session runs with its own service state (:func:`isolated_service_state`): the
key, events and merchandising databases of the working directory (``var/``, where a user
following the README creates keys) are never read, by the tests nor by the services they
start in subprocesses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.engine import SearchEngine
from search.types import Availability, Product

CORE_PRODUCTS: tuple[Product, ...] = (
    Product(
        id="COUCH-1",
        title="Corner couch with chaise, grey fabric",
        description="Deep seats and a chaise on the left.",
        brand="Nordhem",
        categories=(("Furniture", "Living room", "Couches"),),
        attributes={"material": ("fabric",)},
        colours=("grey",),
        price=899.0,
        currency="EUR",
        lang="en",
    ),
    Product(
        id="SOFA-1",
        title="Bergen leather sofa in red",
        description="Red leather sofa with oak legs.",
        brand="Nordhem",
        categories=(("Furniture", "Living room", "Sofas"),),
        attributes={"material": ("leather",)},
        colours=("red",),
        price=1299.0,
        currency="EUR",
        sale_price=999.0,
        lang="en",
    ),
    Product(
        id="CHAIR-1",
        title="Oak dining chair",
        description="Solid oak chair, seat height 45 cm.",
        brand="Woodly",
        categories=(("Furniture", "Dining", "Chairs"),),
        attributes={"material": ("oak",)},
        colours=("natural",),
        price=89.0,
        currency="EUR",
        lang="en",
    ),
    Product(
        id="CHAIR-2",
        title="Walnut dining chair",
        description="Walnut chair with a curved back.",
        brand="Woodly",
        categories=(("Furniture", "Dining", "Chairs"),),
        attributes={"material": ("walnut",)},
        colours=("brown",),
        price=129.0,
        currency="EUR",
        availability=Availability.PREORDER,
        lang="en",
    ),
    Product(
        id="TABLE-1",
        title="Extendable oak dining table 160 cm",
        description="Seats six, extends to 220cm.",
        brand="Woodly",
        categories=(("Furniture", "Dining", "Tables"),),
        attributes={"material": ("oak",)},
        colours=("natural",),
        price=649.0,
        currency="EUR",
        lang="en",
    ),
    Product(
        id="WARDROBE-1",
        title="White wardrobe with sliding doors",
        description="Two sliding doors and a mirror.",
        brand="Casa",
        categories=(("Furniture", "Bedroom", "Wardrobes"),),
        attributes={"material": ("pine",)},
        colours=("white",),
        availability=Availability.BACKORDER,
        lang="en",
    ),
    Product(
        id="KRZESLO-1",
        title="Żółte krzesło ogrodowe",
        description="Lekkie krzesło ze stali, składane.",
        brand="Meble Łódź",
        categories=(("Meble", "Ogród", "Krzesła"),),
        attributes={"material": ("stal",)},
        colours=("żółty",),
        price=149.0,
        currency="PLN",
        lang="pl",
    ),
    Product(
        id="SZAFA-1",
        title="Szafa dębowa z lustrem",
        description="Dwudrzwiowa szafa do sypialni.",
        brand="Meble Łódź",
        categories=(("Meble", "Sypialnia", "Szafy"),),
        attributes={"material": ("dąb",)},
        colours=("brązowy",),
        price=1899.0,
        currency="PLN",
        availability=Availability.OUT_OF_STOCK,
        lang="pl",
    ),
    Product(
        id="SHIRT-1",
        title="Linen shirt, short sleeve",
        description="Breathable linen for summer.",
        brand="Fjord",
        categories=(("Clothing", "Men", "Shirts"),),
        attributes={"size": ("S", "M", "L"), "material": ("linen",)},
        colours=("white", "blue"),
        price=39.0,
        currency="EUR",
        lang="en",
    ),
    Product(
        id="COAT-1",
        title="Wool winter coat",
        description="Warm coat with a hood.",
        brand="Fjord",
        categories=(("Clothing", "Women", "Coats"),),
        attributes={"size": ("M",), "material": ("wool",)},
        colours=("black",),
        price=189.0,
        currency="EUR",
        sale_price=149.0,
        lang="en",
    ),
    Product(
        id="JEANS-1",
        title="Slim fit jeans",
        description="Stretch denim.",
        brand="Denimo",
        categories=(("Clothing", "Men", "Trousers"),),
        attributes={"size": ("M", "L"), "material": ("denim",)},
        colours=("blue",),
        price=59.0,
        currency="EUR",
        lang="en",
    ),
    Product(
        id="KURTKA-1",
        title="Czerwona kurtka przeciwdeszczowa",
        description="Lekka kurtka z kapturem.",
        brand="fjord",
        categories=(("Clothing", "Women", "Jackets"),),
        attributes={"size": ("S", "M"), "material": ("poliester",)},
        colours=("czerwony",),
        lang="pl",
    ),
)
"""Furniture and clothing; Polish titles with diacritics; two products without a price."""

CORE_BY_ID: Mapping[str, Product] = {p.id: p for p in CORE_PRODUCTS}


#: Settings a developer's shell may carry that would change what the tests see.
_FOREIGN_SETTINGS = (
    "PRODUCTSEARCH_CONFIG",
    "PRODUCTSEARCH_KEYS_SECRET",
    "PRODUCTSEARCH_STOREFRONT_KEY",
    "PRODUCTSEARCH_TRUSTED_PROXIES",
    "PRODUCTSEARCH_INDEX_DIR",
)


@pytest.fixture(scope="session", autouse=True)
def isolated_service_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the service's databases away from the working directory for the whole session.

    Keys and merchandising live in memory per application (``none``), events in a file of
    the session's temporary folder (tests that need their own pass ``events_db``). Open mode
    is on, explicitly: the API tests that do not test keys call the search routes without
    one; the tests of keys and scopes pass ``open_mode`` themselves. The per-client rate
    limit is off (every test request comes from the same client). Session-scoped, so
    module fixtures and the services started in subprocesses (``os.environ``) see it too.

    Yields:
        The session's state folder.
    """
    folder = tmp_path_factory.mktemp("service-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRODUCTSEARCH_KEYS_DB", "none")
        patch.setenv("PRODUCTSEARCH_MERCH_DB", "none")
        patch.setenv("PRODUCTSEARCH_EVENTS_DB", str(folder / "events.sqlite3"))
        patch.setenv("PRODUCTSEARCH_OPEN_MODE", "true")
        # Every TestClient request comes from one client ("testclient"): the per-client limit
        # is off unless a test sets it (tests/api/test_secrets.py does).
        patch.setenv("PRODUCTSEARCH_CLIENT_RATE_PER_MINUTE", "0")
        for name in _FOREIGN_SETTINGS:
            patch.delenv(name, raising=False)
        yield folder


@pytest.fixture(scope="session")
def core_products() -> tuple[Product, ...]:
    """The shared test catalogue."""
    return CORE_PRODUCTS


@pytest.fixture(scope="session")
def core_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lexical-only (embedder ``none``) snapshot of :data:`CORE_PRODUCTS`, built once."""
    out = tmp_path_factory.mktemp("core") / "snapshot"
    build_snapshot(CORE_PRODUCTS, out, config=BuildConfig(languages=("en", "pl"), embedder="none"))
    return out


@pytest.fixture(scope="session")
def core_engine(core_snapshot: Path) -> SearchEngine:
    """The engine over :func:`core_snapshot` (lexical retrieval only). Fusion order (no learned ranker), so retriever tests see their own ranking."""
    return open_snapshot(core_snapshot, ranker="none")


def pytest_configure(config: pytest.Config) -> None:
    """Silence pystempel's own deprecation warning (it loads its tables with pkg_resources)."""
    config.addinivalue_line(
        "filterwarnings", "ignore:path is deprecated:DeprecationWarning:pystempel"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests (real model weights) unless a ``-m`` expression selects markers."""
    if config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="loads real model weights: run with -m slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
