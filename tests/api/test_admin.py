"""Admin routes and API keys: scopes on every admin route, rate limits, rules, weights,
versions, audit, keys, experiments and preview, over a real snapshot and real SQLite stores."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.routes import admin
from api.security import (
    KeyStore,
    RateLimiter,
    SearchKeyDep,
    Security,
    create_key_cli,
    merge_filters,
)
from api.service import open_snapshot
from merchandising.experiments import VariantCounts
from merchandising.store import ConfigStore
from search.engine import SearchEngine
from search.types import Filters, SearchRequest
from tests.api import build_snapshot


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    snapshot = build_snapshot(tmp_path_factory.mktemp("admin-api"))
    return open_snapshot(snapshot, use_semantic=False, ranker="none")


def make_app(engine: SearchEngine, security: Security, store: ConfigStore) -> FastAPI:
    """The admin router plus a search route guarded by ``require_search_key``."""
    app = FastAPI()
    install_error_handlers(app)  # as create_app: domain errors become answers there
    app.state.engine = engine
    app.state.security = security
    app.state.config_store = store
    app.include_router(admin.router)

    @app.get("/search")
    def search(key: SearchKeyDep, q: str = "") -> dict[str, Any]:
        filters = merge_filters(Filters(), key.filters if key is not None else None)
        result = engine.search(SearchRequest(text=q, filters=filters, k=20))
        return {"ids": [h.product.id for h in result.hits]}

    return app


class Env:
    """A test app with its stores and tokens."""

    def __init__(self, engine: SearchEngine, tmp_path: Path, *, with_keys: bool = True) -> None:
        self.clock = FakeClock()
        self.keys = KeyStore(tmp_path / "keys.sqlite", secret="pepper")
        self.security = Security(self.keys, RateLimiter(self.clock))
        self.store = ConfigStore(tmp_path / "merch.sqlite")
        self.client = TestClient(make_app(engine, self.security, self.store))
        self.admin = self.search = ""
        if with_keys:
            _, self.admin = self.keys.create("ops", "admin", rate_per_minute=10_000, burst=1000)
            _, self.search = self.keys.create("storefront", "search")

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = self.headers(token) if token else {}
        return self.client.request(method, path, headers=headers, **kw)

    def close(self) -> None:
        self.client.close()
        self.keys.close()
        self.store.close()


@pytest.fixture
def env(engine: SearchEngine, tmp_path: Path) -> Iterator[Env]:
    e = Env(engine, tmp_path)
    yield e
    e.close()


PATH_VALUES = {"rule_id": "r1", "version": "1", "key_id": "abc", "experiment_id": "e1"}


def admin_routes() -> list[tuple[str, str]]:
    out = []
    for route in admin.router.routes:
        assert isinstance(route, APIRoute)
        path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], route.path)
        out += [(method, path) for method in sorted(route.methods or ())]
    return out


ADMIN_ROUTES = admin_routes()


class TestScopes:
    def test_every_admin_route_is_listed(self) -> None:
        assert len(ADMIN_ROUTES) == 21
        assert ("POST", "/admin/preview") in ADMIN_ROUTES
        assert ("POST", "/admin/rollback/1") in ADMIN_ROUTES

    @pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
    def test_search_key_never_reaches_an_admin_route(
        self, env: Env, method: str, path: str
    ) -> None:
        before = env.store.current().version
        response = env.call(method, path, env.search, json={})
        assert response.status_code == 403, response.text
        assert "admin key" in response.json()["detail"]
        assert env.store.current().version == before

    @pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
    def test_no_or_bad_key_is_refused(self, env: Env, method: str, path: str) -> None:
        assert env.call(method, path, json={}).status_code == 401
        bad = env.call(method, path, "ps_000000000000_" + "x" * 43, json={})
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
    def test_admin_key_passes_the_guard(self, env: Env, method: str, path: str) -> None:
        response = env.call(method, path, env.admin, json={})
        assert response.status_code not in (401, 403), response.text

    def test_search_key_and_admin_key_reach_search(self, env: Env) -> None:
        assert env.call("GET", "/search?q=sofa", env.search).status_code == 200
        assert env.call("GET", "/search?q=sofa", env.admin).status_code == 200
        assert env.call("GET", "/search?q=sofa").status_code == 401

    def test_x_api_key_header(self, env: Env) -> None:
        ok = env.client.get("/search", params={"q": "sofa"}, headers={"X-API-Key": env.search})
        assert ok.status_code == 200
        denied = env.client.get("/admin/rules", headers={"X-API-Key": env.search})
        assert denied.status_code == 403

    def test_revoked_key_is_refused(self, env: Env) -> None:
        key_id = env.search.split("_")[1]
        assert env.call("DELETE", f"/admin/keys/{key_id}", env.admin).status_code == 200
        assert env.call("GET", "/search?q=sofa", env.search).status_code == 401

    def test_tampered_secret_is_refused(self, env: Env) -> None:
        tampered = env.search[:-1] + ("A" if env.search[-1] != "A" else "B")
        assert env.call("GET", "/search?q=sofa", tampered).status_code == 401


class TestNoKeys:
    def test_fresh_install_is_closed_and_says_how_to_open_it(
        self, engine: SearchEngine, tmp_path: Path
    ) -> None:
        env = Env(engine, tmp_path, with_keys=False)
        try:
            assert env.security.startup_warning() is not None
            refused = env.call("GET", "/search?q=sofa")
            assert refused.status_code == 401
            assert "PRODUCTSEARCH_OPEN_MODE" in refused.json()["detail"]
            assert "productsearch keys create" in refused.json()["detail"]
            for method, path in ADMIN_ROUTES:
                response = env.call(method, path, json={})
                assert response.status_code == 401
                assert "--scope admin" in response.json()["detail"]
        finally:
            env.close()

    def test_open_mode_opens_search_only_and_the_first_key_keeps_it_open(
        self, engine: SearchEngine, tmp_path: Path
    ) -> None:
        env = Env(engine, tmp_path, with_keys=False)
        env.security.open_mode = True
        try:
            assert env.call("GET", "/search?q=sofa").status_code == 200
            for method, path in ADMIN_ROUTES:
                assert env.call(method, path, json={}).status_code == 401
            lines: list[str] = []
            token = create_key_cli(
                tmp_path / "keys.sqlite", "first", "admin", secret="pepper", echo=lines.append
            )
            assert lines[-1] == token
            assert str(tmp_path / "keys.sqlite") in lines[0]  # names the database it used
            # The first admin key does not close the storefront: open mode is a setting.
            assert env.call("GET", "/search?q=sofa").status_code == 200
            assert env.call("GET", "/admin/rules", token).status_code == 200
        finally:
            env.close()


class TestRateLimits:
    def test_search_key_gets_429_with_retry_after(self, env: Env) -> None:
        _, token = env.keys.create("tiny", "search", rate_per_minute=30, burst=2)
        assert env.call("GET", "/search?q=sofa", token).status_code == 200
        assert env.call("GET", "/search?q=sofa", token).status_code == 200
        limited = env.call("GET", "/search?q=sofa", token)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"  # 30/min: one token every 2 s
        # Other keys are not affected.
        assert env.call("GET", "/search?q=sofa", env.search).status_code == 200
        env.clock.now += 2.0
        assert env.call("GET", "/search?q=sofa", token).status_code == 200

    def test_admin_request_is_charged_once(self, env: Env) -> None:
        _, token = env.keys.create("tiny-admin", "admin", rate_per_minute=1, burst=3)
        for _ in range(3):
            assert env.call("GET", "/admin/rules", token).status_code == 200
        limited = env.call("GET", "/admin/rules", token)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "60"


RULE = {
    "id": "r1",
    "match": "contains",
    "query": "sofa",
    "actions": [{"type": "pin", "product_id": "SOFA-3", "position": 1}],
}


class TestRulesAndVersions:
    def test_crud_audit_and_rollback(self, env: Env) -> None:
        created = env.call("POST", "/admin/rules", env.admin, json=RULE)
        assert created.status_code == 201, created.text
        assert created.json()["version"] == 1
        assert env.call("POST", "/admin/rules", env.admin, json=RULE).status_code == 409
        updated = env.call(
            "PUT",
            "/admin/rules/r1?comment=move",
            env.admin,
            json={
                **RULE,
                "priority": 3,
                "actions": [{"type": "pin", "product_id": "NOPE", "position": 2}],
            },
        )
        assert updated.status_code == 200
        assert updated.json()["warnings"] == ["r1: NOPE"]
        listed = env.call("GET", "/admin/rules", env.admin).json()
        assert listed["version"] == 2
        assert listed["rules"][0]["priority"] == 3
        assert env.call("GET", "/admin/rules/r1", env.admin).json()["rule"]["priority"] == 3
        assert env.call("GET", "/admin/rules/zz", env.admin).status_code == 404
        assert env.call("DELETE", "/admin/rules/r1", env.admin).status_code == 200
        assert env.call("DELETE", "/admin/rules/r1", env.admin).status_code == 404

        audit = env.call("GET", "/admin/audit", env.admin).json()["entries"]
        assert [e["action"] for e in audit] == ["rule.delete", "rule.update", "rule.create"]
        assert audit[0]["actor"].startswith("ops (key ")
        assert audit[1]["before"]["priority"] == 0 and audit[1]["after"]["priority"] == 3

        versions = env.call("GET", "/admin/versions", env.admin).json()
        assert versions["current"] == 3
        assert [v["version"] for v in versions["versions"]] == [3, 2, 1]
        assert env.call("GET", "/admin/versions/1", env.admin).json()["rules"][0]["id"] == "r1"
        assert env.call("GET", "/admin/versions/9", env.admin).status_code == 404

        rolled = env.call("POST", "/admin/rollback/1", env.admin)
        assert rolled.status_code == 200
        assert rolled.json()["version"] == 4
        assert [r["id"] for r in env.call("GET", "/admin/rules", env.admin).json()["rules"]] == [
            "r1"
        ]
        assert env.call("POST", "/admin/rollback/99", env.admin).status_code == 404

    def test_bad_rule_names_the_field(self, env: Env) -> None:
        bad = {**RULE, "actions": [{"type": "pin", "product_id": "SOFA-3", "position": 0}]}
        response = env.call("POST", "/admin/rules", env.admin, json=bad)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "rule.actions[0].position"]
        mismatch = env.call("PUT", "/admin/rules/other", env.admin, json=RULE)
        assert mismatch.status_code == 422

    def test_stale_edit_is_a_conflict(self, env: Env) -> None:
        assert (
            env.call("POST", "/admin/rules?expected_version=0", env.admin, json=RULE).status_code
            == 201
        )
        stale = env.call("PUT", "/admin/rules/r1?expected_version=0", env.admin, json=RULE)
        assert stale.status_code == 409

    def test_replace_all(self, env: Env) -> None:
        rules = [RULE, {**RULE, "id": "r2"}]
        assert (
            env.call("PUT", "/admin/rules", env.admin, json={"rules": rules}).json()["rules"] == 2
        )
        dup = env.call("PUT", "/admin/rules", env.admin, json={"rules": [RULE, RULE]})
        assert dup.status_code == 422

    def test_weights(self, env: Env) -> None:
        assert (
            env.call("GET", "/admin/weights", env.admin).json()["weights"]["colour_rerank"] == 3.0
        )
        put = env.call("PUT", "/admin/weights", env.admin, json={"retrievers": {"semantic": 0.7}})
        assert put.status_code == 200
        assert env.call("GET", "/admin/weights", env.admin).json()["weights"]["retrievers"] == {
            "lexical": 1.0,
            "semantic": 0.7,
        }
        bad = env.call("PUT", "/admin/weights", env.admin, json={"personalisation": 2})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "weights.personalisation"]


class TestKeys:
    def test_create_list_and_scoped_filters(self, env: Env) -> None:
        created = env.call(
            "POST",
            "/admin/keys",
            env.admin,
            json={"name": "casa-shop", "scope": "search", "filters": {"brands": ["Casa"]}},
        )
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        listed = env.call("GET", "/admin/keys", env.admin).json()["keys"]
        assert {k["name"] for k in listed} == {"ops", "storefront", "casa-shop"}
        assert all("token" not in k and "hash" not in k for k in listed)
        assert token not in str(listed)

        unfiltered = env.call("GET", "/search?q=sofa", env.search).json()["ids"]
        assert {"SOFA-1", "SOFA-2", "SOFA-3"} <= set(unfiltered)
        assert env.call("GET", "/search?q=sofa", token).json()["ids"] == ["SOFA-3"]
        assert env.store.audit()[0].action == "key.create"

    def test_stored_hashed(self, env: Env, tmp_path: Path) -> None:
        raw = (tmp_path / "keys.sqlite").read_bytes()
        assert env.admin.encode() not in raw
        secret = env.admin.split("_", 2)[2]  # ps_<id>_<secret>; the secret may hold "_" itself
        assert len(secret) >= 20 and secret.encode() not in raw

    def test_bad_key_requests(self, env: Env) -> None:
        bad_scope = env.call("POST", "/admin/keys", env.admin, json={"name": "x", "scope": "root"})
        assert bad_scope.status_code == 422
        admin_filters = env.call(
            "POST", "/admin/keys", env.admin,
            json={"name": "x", "scope": "admin", "filters": {"brands": ["Casa"]}},
        )  # fmt: skip
        assert admin_filters.status_code == 422
        assert env.call("DELETE", "/admin/keys/nope", env.admin).status_code == 404

    def test_last_admin_key_cannot_be_revoked(self, env: Env) -> None:
        admin_id = env.admin.split("_")[1]
        assert env.call("DELETE", f"/admin/keys/{admin_id}", env.admin).status_code == 409


class TestMergeFilters:
    @pytest.mark.parametrize(
        ("requested", "fixed", "expected"),
        [
            (Filters(), Filters(attributes={"Country": ("PL",)}), Filters(attributes={"country": ("pl",)})),
            (Filters(brands=("Casa", "Woodly")), Filters(brands=("casa",)), Filters(brands=("casa",))),
            (Filters(price_min=10, price_max=100), Filters(price_max=50), Filters(price_min=10, price_max=50)),
            (
                Filters(categories=(("Furniture", "Sofas"),)),
                Filters(categories=(("furniture",),)),
                Filters(categories=(("Furniture", "Sofas"),)),
            ),
        ],
    )  # fmt: skip
    def test_narrowing(self, requested: Filters, fixed: Filters, expected: Filters) -> None:
        assert merge_filters(requested, fixed) == expected

    def test_disjoint_matches_nothing(self, engine: SearchEngine) -> None:
        merged = merge_filters(Filters(brands=("Woodly",)), Filters(brands=("Casa",)))
        assert engine.search(SearchRequest(text="chair", filters=merged)).total == 0
        merged = merge_filters(Filters(price_min=500), Filters(price_max=100))
        assert engine.search(SearchRequest(text="sofa", filters=merged)).total == 0


EXPERIMENT = {
    "variants": [
        {"name": "control", "share": 0.5},
        {"name": "b", "share": 0.5, "weights": {"colour_rerank": 1.0}},
    ]
}


class TestExperiments:
    def test_crud_and_reports(self, env: Env) -> None:
        put = env.call("PUT", "/admin/experiments/e1", env.admin, json=EXPERIMENT)
        assert put.status_code == 200, put.text
        assert [
            e["id"] for e in env.call("GET", "/admin/experiments", env.admin).json()["experiments"]
        ] == ["e1"]
        bad = env.call("PUT", "/admin/experiments/e2", env.admin, json={"variants": []})
        assert bad.status_code == 422

        assert env.call("GET", "/admin/experiments/e1/report", env.admin).status_code == 503
        counts = {"control": {"units": 1000, "clicked": 200, "converted": 30},
                  "b": {"units": 1000, "clicked": 250, "converted": 30}}  # fmt: skip
        posted = env.call(
            "POST", "/admin/experiments/e1/report", env.admin, json={"counts": counts}
        )
        assert posted.status_code == 200
        body = posted.json()
        assert body["control"] == "control"
        b = body["variants"][1]
        assert b["name"] == "b"
        assert b["ctr"]["p_value"] == pytest.approx(0.00739, abs=1e-4)
        assert b["ctr"]["low"] < 0.25 < b["ctr"]["high"]
        inconsistent = {"control": {"units": 1, "clicked": 2, "converted": 0}}
        assert (
            env.call(
                "POST", "/admin/experiments/e1/report", env.admin, json={"counts": inconsistent}
            ).status_code
            == 422
        )

        def source(experiment_id: str) -> Mapping[str, VariantCounts]:
            assert experiment_id == "e1"
            return {"control": VariantCounts(10, 5, 1)}

        env.client.app.state.experiment_counts = source  # type: ignore[attr-defined]
        report = env.call("GET", "/admin/experiments/e1/report", env.admin).json()
        assert report["variants"][0]["ctr"]["rate"] == 0.5
        assert report["variants"][1]["counts"] == {"units": 0, "clicked": 0, "converted": 0}
        assert env.call("GET", "/admin/experiments/zz/report", env.admin).status_code == 404

        assert env.call("DELETE", "/admin/experiments/e1", env.admin).status_code == 200
        assert env.call("DELETE", "/admin/experiments/e1", env.admin).status_code == 404


class TestPreview:
    def test_proposed_pin_and_hide_side_by_side(self, env: Env) -> None:
        proposed = {
            "id": "promo",
            "match": "exact",
            "query": "sofa",
            "actions": [
                {"type": "pin", "product_id": "LAMP-1", "position": 1},
                {"type": "hide", "product_ids": ["SOFA-1"]},
            ],
        }
        response = env.call(
            "POST", "/admin/preview", env.admin, json={"q": "sofa", "k": 5, "rule": proposed}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        before = [h["id"] for h in body["before"]["hits"]]
        after = [h["id"] for h in body["after"]["hits"]]
        assert "SOFA-1" in before and "LAMP-1" not in before
        assert after[0] == "LAMP-1"
        assert "SOFA-1" not in after
        assert body["after"]["hits"][0]["rules"] == [
            "pinned at 1 by rule 'promo' (inserted: not retrieved)"
        ]
        assert body["rows"][0]["after"] == "LAMP-1" and body["rows"][0]["change"] == "new"
        # Nothing was saved.
        assert env.store.current().version == 0

    def test_current_rules_are_the_before_side(self, env: Env) -> None:
        env.call(
            "POST",
            "/admin/rules",
            env.admin,
            json={**RULE, "actions": [{"type": "redirect", "url": "/sofas"}]},
        )
        body = env.call("POST", "/admin/preview", env.admin, json={"q": "sofa", "rules": []}).json()
        assert body["before"]["redirect"] == "/sofas"
        assert body["after"]["redirect"] is None
        assert all(r["change"] == "same" for r in body["rows"])

    def test_weights_and_synonyms(self, env: Env) -> None:
        synonyms = {
            "id": "syn",
            "match": "global",
            "actions": [{"type": "synonyms", "words": ["couch", "sofa"]}],
        }
        body = env.call(
            "POST", "/admin/preview", env.admin, json={"q": "couch", "rule": synonyms}
        ).json()
        assert body["before"]["hits"] == []
        assert {"SOFA-1", "SOFA-2", "SOFA-3"} <= {h["id"] for h in body["after"]["hits"]}
        weighted = env.call(
            "POST", "/admin/preview", env.admin, json={"q": "oak", "weights": {"colour_rerank": 0}}
        )
        assert weighted.status_code == 200

    def test_bad_proposal(self, env: Env) -> None:
        bad = env.call(
            "POST", "/admin/preview", env.admin, json={"q": "sofa", "weights": {"nope": 1}}
        )
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "weights.nope"]
