"""Merchandising through the real service: rules and weights saved by an admin key take effect
on the next search (no restart), explain shows them, rollback restores the ranking, search
keys carry fixed filters and never reach admin routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from search.rules import filters_from_dict
from tests.api import build_snapshot


class Env:
    def __init__(self, client: TestClient, admin: str, search: str, polish: str) -> None:
        self.client = client
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.search = {"Authorization": f"Bearer {search}"}
        self.polish = {"Authorization": f"Bearer {polish}"}

    def ids(self, headers: dict[str, str] | None = None, **params: object) -> list[str]:
        response = self.client.get(
            "/search", params={"as_you_type": "false", **params}, headers=headers or self.search
        )
        assert response.status_code == 200, response.text
        return [h["id"] for h in response.json()["hits"]]


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    snapshot = build_snapshot(tmp_path)
    app = create_app(
        Settings(
            index_dir=snapshot,
            text_embedder="none",
            events_db="none",
            keys_db=tmp_path / "keys.sqlite3",
            merch_db=tmp_path / "merch.sqlite3",
            open_mode=False,  # keys are what these tests are about
        )
    )
    with TestClient(app) as client:
        keys = app.state.security.keys
        _, admin = keys.create("merchandiser", "admin")
        _, search = keys.create("storefront", "search")
        nordhem = filters_from_dict({"brands": ["Nordhem"]})
        _, polish = keys.create("nordhem-store", "search", filters=nordhem)
        yield Env(client, admin, search, polish)


class TestRulesTakeEffect:
    def test_pin_applies_on_next_search_and_rollback_removes_it(self, env: Env) -> None:
        before = env.ids(q="sofa")
        last = before[-1]
        rule = {
            "id": "pin-sofa",
            "match": "contains",
            "query": "sofa",
            "actions": [{"type": "pin", "product_id": last, "position": 1}],
        }
        created = env.client.post("/admin/rules", json=rule, headers=env.admin)
        assert created.status_code in (200, 201), created.text
        assert env.ids(q="sofa")[0] == last
        assert env.ids(q="leather sofa")[0] == last
        assert env.ids(q="oak chair")[0] != last

        body = env.client.get(
            "/search", params={"q": "sofa", "explain": "true"}, headers=env.search
        ).json()
        stages = [a["stage"] for a in body["hits"][0]["explanation"]["adjustments"]]
        assert "rules" in stages

        versions = env.client.get("/admin/versions", headers=env.admin).json()
        assert env.client.post("/admin/rollback/0", headers=env.admin).status_code == 200, versions
        assert env.ids(q="sofa") == before

    def test_hide_removes_from_results_and_total(self, env: Env) -> None:
        before = env.client.get("/search", params={"q": "sofa"}, headers=env.search).json()
        hidden = before["hits"][0]["id"]
        rule = {
            "id": "hide",
            "match": "global",
            "actions": [{"type": "hide", "product_ids": [hidden]}],
        }
        assert env.client.post("/admin/rules", json=rule, headers=env.admin).status_code in (
            200,
            201,
        )
        after = env.client.get("/search", params={"q": "sofa"}, headers=env.search).json()
        assert hidden not in [h["id"] for h in after["hits"]]
        assert after["total"] == before["total"] - 1

    def test_redirect(self, env: Env) -> None:
        rule = {
            "id": "help",
            "match": "exact",
            "query": "returns",
            "actions": [{"type": "redirect", "url": "https://shop.example/help/returns"}],
        }
        assert env.client.post("/admin/rules", json=rule, headers=env.admin).status_code in (
            200,
            201,
        )
        body = env.client.get("/search", params={"q": "Returns"}, headers=env.search).json()
        assert body["redirect"] == "https://shop.example/help/returns"

    def test_weights_change_without_restart(self, env: Env) -> None:
        response = env.client.put(
            "/admin/weights", json={"colour_rerank": 0.0, "colour_weight": 0.0}, headers=env.admin
        )
        assert response.status_code == 200, response.text
        engine = env.client.app.state.engine  # type: ignore[attr-defined]
        env.ids(q="sofa")  # the next request picks the version up
        tuning = env.client.app.state.tuning  # type: ignore[attr-defined]
        assert (tuning.weights.colour_rerank, tuning.weights.colour_weight) == (0.0, 0.0)
        assert env.client.app.state.engine is engine  # type: ignore[attr-defined]


class TestKeys:
    def test_search_key_fixed_filters(self, env: Env) -> None:
        everything = env.ids(q="sofa")
        narrowed = env.ids(env.polish, q="sofa")
        assert narrowed and set(narrowed) < set(everything)

    def test_search_key_cannot_reach_admin(self, env: Env) -> None:
        assert env.client.get("/admin/rules", headers=env.search).status_code == 403
        assert env.client.get("/reports/colours", headers=env.search).status_code == 403

    def test_no_key_is_401_with_open_mode_off(self, env: Env) -> None:
        assert env.client.get("/search", params={"q": "sofa"}).status_code == 401
