"""What each scope may reach: every route of the application (the OpenAPI schema, the pages,
the docs and the voice WebSocket) against one table, with every kind of credential, with open
mode off and on; and a filtered search key's filters on every route that reveals a product."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from PIL import Image
from starlette.routing import Route
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.deps import visible_suggestions
from api.security import KeyStore
from api.settings import Settings
from indexer.build import BuildConfig, build_snapshot
from search.types import Filters, Product

Need = Literal["public", "search", "storefront", "admin"]
"""``storefront``: a search key only (the Algolia-compatible routes refuse admin keys, 403)."""

#: THE table: every route of the service and the least it needs. A route missing here fails
#: ``test_every_route_is_in_the_table``; add its row (and think about who may call it).
ROUTES: dict[tuple[str, str], Need] = {
    # Search: storefronts and apps (search keys), open mode.
    ("GET", "/search"): "search",
    ("GET", "/suggest"): "search",
    ("POST", "/search/image"): "search",
    ("POST", "/search/voice"): "search",
    ("WEBSOCKET", "/search/voice/stream"): "search",
    ("GET", "/products/{product_id}"): "search",
    ("GET", "/products/{product_id}/images/{index}"): "search",
    ("GET", "/products/{product_id}/similar"): "search",
    ("POST", "/events"): "search",
    # Algolia-compatible (InstantSearch storefronts): search keys only, never admin.
    ("POST", "/1/indexes/*/queries"): "storefront",
    ("POST", "/1/indexes/{index_name}/query"): "storefront",
    ("GET", "/1/indexes/{index_name}"): "storefront",
    ("POST", "/1/events"): "storefront",
    # Shopper data and analytics: admin, even in open mode.
    ("DELETE", "/users/{user_id}"): "admin",
    ("GET", "/analytics/queries"): "admin",
    ("GET", "/reports/colours"): "admin",
    ("GET", "/reports/import"): "admin",
    # Catalogue and snapshot.
    ("POST", "/admin/catalogue/changes"): "admin",
    ("POST", "/admin/snapshot/reload"): "admin",
    # Merchandising.
    ("GET", "/admin/rules"): "admin",
    ("POST", "/admin/rules"): "admin",
    ("PUT", "/admin/rules"): "admin",
    ("GET", "/admin/rules/{rule_id}"): "admin",
    ("PUT", "/admin/rules/{rule_id}"): "admin",
    ("DELETE", "/admin/rules/{rule_id}"): "admin",
    ("GET", "/admin/weights"): "admin",
    ("PUT", "/admin/weights"): "admin",
    ("GET", "/admin/versions"): "admin",
    ("GET", "/admin/versions/{version}"): "admin",
    ("POST", "/admin/rollback/{version}"): "admin",
    ("GET", "/admin/audit"): "admin",
    ("GET", "/admin/keys"): "admin",
    ("POST", "/admin/keys"): "admin",
    ("DELETE", "/admin/keys/{key_id}"): "admin",
    ("GET", "/admin/experiments"): "admin",
    ("PUT", "/admin/experiments/{experiment_id}"): "admin",
    ("DELETE", "/admin/experiments/{experiment_id}"): "admin",
    ("GET", "/admin/experiments/{experiment_id}/report"): "admin",
    ("POST", "/admin/experiments/{experiment_id}/report"): "admin",
    ("POST", "/admin/preview"): "admin",
    # Public: probes, metrics (keep behind the proxy), pages, docs.
    ("GET", "/health"): "public",
    ("GET", "/ready"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/"): "public",
    ("GET", "/storefront"): "public",
    ("GET", "/console"): "public",
    ("GET", "/web/{name}"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/assets/{name}"): "public",
    ("GET", "/redoc"): "public",
}

#: Values for path parameters (a visible product, so the filtered key passes too).
PATH_VALUES = {
    "product_id": "SOFA-1",
    "index": "0",
    "user_id": "u-1",
    "rule_id": "r1",
    "version": "1",
    "key_id": "abc",
    "experiment_id": "e1",
    "name": "style.css",
    "index_name": "products",
}

Credential = Literal["none", "malformed", "revoked", "search", "filtered", "admin"]
CREDENTIALS: tuple[Credential, ...] = (
    "none",
    "malformed",
    "revoked",
    "search",
    "filtered",
    "admin",
)


def expected(need: Need, credential: Credential, open_mode: bool) -> str:
    """What the table says a credential gets: ``"pass"``, ``"401"`` or ``"403"``."""
    if need == "public":
        return "pass"
    if credential in ("malformed", "revoked"):
        return "401"  # a presented key must be valid, open mode or not
    if credential == "none":
        return "pass" if need in ("search", "storefront") and open_mode else "401"
    if need == "admin" and credential != "admin":
        return "403"
    if need == "storefront" and credential == "admin":
        return "403"
    return "pass"


PRODUCTS_ROWS = (
    ("SOFA-1", "Oslo three-seat sofa", "Nordhem", (120, 120, 125)),
    ("SOFA-2", "Bergen leather sofa", "Nordhem", (110, 70, 40)),
    ("CHAIR-2", "Walnut dining chair", "Woodly", (115, 75, 45)),
    ("TABLE-9", "Walnut coffee table", "Woodly", (112, 72, 42)),
)


@dataclass
class Service:
    """An application over a small snapshot with photos, and one token per credential."""

    app: FastAPI
    tokens: dict[Credential, str | None]


def make_service(work: Path, *, open_mode: bool) -> Service:
    products = []
    for product_id, title, brand, rgb in PRODUCTS_ROWS:
        path = work / f"{product_id}.png"
        Image.new("RGB", (64, 64), rgb).save(path)
        products.append(Product(product_id, title, brand=brand, images=(str(path),)))
    snapshot = work / "snapshot"
    if not snapshot.exists():
        build_snapshot(
            products, snapshot, config=BuildConfig(embedder="none", image_embedder="descriptor")
        )
    keys_db = work / f"keys-{open_mode}.sqlite3"
    keys = KeyStore(keys_db)
    unlimited: dict[str, Any] = {"rate_per_minute": 1_000_000, "burst": 100_000}
    _, admin = keys.create("ops", "admin", **unlimited)
    _, search = keys.create("storefront", "search", **unlimited)
    _, filtered = keys.create(
        "storefront-nordhem", "search", filters=Filters(brands=("Nordhem",)), **unlimited
    )
    revoked_key, revoked = keys.create("old", "search", **unlimited)
    keys.revoke(revoked_key.id)
    keys.close()
    settings = Settings(
        index_dir=snapshot,
        text_embedder="none",
        events_db=str(work / f"events-{open_mode}.sqlite3"),
        keys_db=keys_db,
        merch_db=None,
        open_mode=open_mode,
        client_rate_per_minute=1_000_000,
        client_burst=100_000,
        speech_recognizer="none",
    )
    return Service(
        create_app(settings),
        {
            "none": None,
            "malformed": "ps_not-a-key",
            "revoked": revoked,
            "search": search,
            "filtered": filtered,
            "admin": admin,
        },
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scopes")


@pytest.fixture(scope="module", params=[False, True], ids=["closed", "open-mode"])
def service(work: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Service, TestClient]]:
    svc = make_service(work, open_mode=request.param)
    with TestClient(svc.app, follow_redirects=False) as client:
        yield svc, client


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the application answers: its routes, those left out of the
    schema included, and the WebSocket."""
    out: set[tuple[str, str]] = set()
    # Included routers stay nested in app.routes; their contexts carry the full paths.
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path
        assert path is not None
        if isinstance(route, APIWebSocketRoute):
            out.add(("WEBSOCKET", path))
        elif isinstance(route, APIRoute | Route):
            out |= {(m, path) for m in context.methods or () if m != "HEAD"}
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r} at {path}")
    return out


def concrete(path: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in PATH_VALUES, f"add a value for path parameter {name!r} to PATH_VALUES"
        return PATH_VALUES[name]

    return re.sub(r"\{(\w+)\}", value, path)


def outcome(client: TestClient, method: str, path: str, token: str | None) -> str:
    """``"401"``, ``"403"`` or ``"pass"`` (any other status: the guard let it through)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = concrete(path)
    if method == "WEBSOCKET":
        try:
            with client.websocket_connect(url, headers=headers) as socket:
                socket.send_text("end")
                socket.receive_json()
        except WebSocketDenialResponse as denied:
            return str(denied.status_code)
        except WebSocketDisconnect:
            pass
        return "pass"
    response = client.request(method, url, headers=headers, json={})
    status = response.status_code
    if status in (401, 403):
        return str(status)
    return "pass"


class TestTable:
    def test_every_route_is_in_the_table(self, service: tuple[Service, TestClient]) -> None:
        svc, _ = service
        found = app_routes(svc.app)
        schema = {
            (method.upper(), path)
            for path, item in svc.app.openapi()["paths"].items()
            for method in item
        }
        assert schema <= found
        missing = sorted(found - ROUTES.keys())
        assert not missing, f"routes without a row in ROUTES (who may call them?): {missing}"
        stale = sorted(ROUTES.keys() - found)
        assert not stale, f"rows for routes that no longer exist: {stale}"

    @pytest.mark.parametrize("credential", CREDENTIALS)
    def test_each_credential_gets_what_the_table_says(
        self, service: tuple[Service, TestClient], credential: Credential
    ) -> None:
        svc, client = service
        open_mode = svc.app.state.settings.open_mode
        wrong = []
        for (method, path), need in sorted(ROUTES.items()):
            got = outcome(client, method, path, svc.tokens[credential])
            want = expected(need, credential, open_mode)
            if got != want:
                wrong.append(f"{method} {path} ({need}): got {got}, want {want}")
        assert not wrong, "\n".join(wrong)

    def test_the_schema_declares_its_security_schemes(
        self, service: tuple[Service, TestClient]
    ) -> None:
        svc, _ = service
        schema = svc.app.openapi()
        schemes = schema["components"]["securitySchemes"]
        assert schemes["BearerKey"] == {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["BearerKey"]["description"],
        }
        assert schemes["ApiKeyHeader"]["in"] == "header"
        assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"
        for (method, path), need in ROUTES.items():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue  # pages, docs and the WebSocket are not in the schema
            declared = {name for req in operation.get("security", []) for name in req}
            if need == "public":
                assert not declared, f"{method} {path} is public but declares {declared}"
            elif need == "storefront":
                want = {"AlgoliaApiKey", "BearerKey", "ApiKeyHeader"}
                assert declared == want, f"{method} {path}"
            else:
                assert declared == {"BearerKey", "ApiKeyHeader"}, f"{method} {path}"


class TestFilteredKey:
    """A key fixed to brand Nordhem: the Woodly products do not exist for it."""

    @pytest.fixture
    def client(self, service: tuple[Service, TestClient]) -> TestClient:
        return service[1]

    def get(self, service: tuple[Service, TestClient], path: str, who: Credential) -> Any:
        svc, client = service
        token = svc.tokens[who]
        return client.get(path, headers={"Authorization": f"Bearer {token}"})

    @pytest.mark.parametrize(
        "template",
        ["/products/{id}", "/products/{id}/images/0", "/products/{id}/similar"],
    )
    def test_a_hidden_product_answers_like_an_unknown_one(
        self, service: tuple[Service, TestClient], template: str
    ) -> None:
        hidden = self.get(service, template.format(id="CHAIR-2"), "filtered")
        unknown = self.get(service, template.format(id="NO-SUCH"), "filtered")
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["detail"].replace("CHAIR-2", "X") == unknown.json()["detail"].replace(
            "NO-SUCH", "X"
        )
        # The unfiltered key sees the product (its photo is served or refused by the image
        # rules, never answered as an unknown product).
        seen = self.get(service, template.format(id="CHAIR-2"), "search")
        assert seen.status_code == 200 or "no product" not in seen.json()["detail"]
        visible = self.get(service, template.format(id="SOFA-1"), "filtered")
        assert visible.status_code == seen.status_code

    def test_a_visible_product_is_served(self, service: tuple[Service, TestClient]) -> None:
        response = self.get(service, "/products/SOFA-1", "filtered")
        assert response.status_code == 200
        assert response.json()["id"] == "SOFA-1"

    def test_similar_products_hold_to_the_filters(
        self, service: tuple[Service, TestClient]
    ) -> None:
        everyone = self.get(service, "/products/SOFA-2/similar?k=10", "search").json()
        narrowed = self.get(service, "/products/SOFA-2/similar?k=10", "filtered").json()
        assert {"CHAIR-2", "TABLE-9"} <= {h["id"] for h in everyone["hits"]}
        assert [h["id"] for h in narrowed["hits"]] == ["SOFA-1"]

    def test_suggestions_never_name_a_hidden_product(
        self, service: tuple[Service, TestClient]
    ) -> None:
        everyone = self.get(service, "/suggest?q=wal", "search").json()["suggestions"]
        assert any("walnut" in s["text"] for s in everyone)
        for prefix in ("wal", "walnut", "walnt", "dining", "coffee", "ch"):
            shown = self.get(service, f"/suggest?q={prefix}", "filtered").json()["suggestions"]
            texts = " ".join(s["text"] for s in shown)
            for word in ("walnut", "dining", "coffee", "chair", "table"):
                assert word not in texts, (prefix, texts)
        visible = self.get(service, "/suggest?q=be", "filtered").json()["suggestions"]
        assert "bergen" in [s["text"] for s in visible]

    def test_popular_queries_about_hidden_products_are_dropped(
        self, service: tuple[Service, TestClient]
    ) -> None:
        svc, _ = service
        engine = svc.app.state.engine
        filtered = svc.app.state.security.keys.authenticate(svc.tokens["filtered"])
        popular = {"walnut chair": 9, "leather sofa": 5, "sofa": 4}
        _, kept = visible_suggestions(engine, filtered, popular)
        assert kept == {"leather sofa": 5, "sofa": 4}
        _, everything = visible_suggestions(engine, None, popular)
        assert everything == popular

    def test_search_and_facets_were_already_narrowed(
        self, service: tuple[Service, TestClient]
    ) -> None:
        hits = self.get(service, "/search?q=walnut", "filtered").json()["hits"]
        assert hits == []
