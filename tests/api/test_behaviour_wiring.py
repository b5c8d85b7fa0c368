"""Events reach ranking: shoppers' clicks and purchases move products up for a query, and a
known shopper's history personalises the order, with explain showing both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api import build_snapshot


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    snapshot = build_snapshot(tmp_path)
    settings = Settings(
        index_dir=snapshot,
        text_embedder="none",
        events_db=str(tmp_path / "events.sqlite3"),
        behaviour_refresh_s=3600,  # refreshed by hand below
    )
    app = create_app(settings)
    # Erasure needs an admin key (also in open mode); it reaches the search routes too.
    _, admin = app.state.security.keys.create("ops", "admin", rate_per_minute=100_000, burst=10_000)
    with TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as test_client:
        yield test_client


def ids(client: TestClient, **params: object) -> list[str]:
    body = client.get("/search", params={"as_you_type": "false", **params}).json()
    return [h["id"] for h in body["hits"]]


def refresh(client: TestClient) -> None:
    client.app.state.signals_refresher.refresh()  # type: ignore[attr-defined]


class TestBehaviourReachesRanking:
    def test_clicked_and_bought_product_rises_for_its_query(self, client: TestClient) -> None:
        before = ids(client, q="sofa")
        favourite = before[-1]
        events = []
        for s in range(30):
            events.append(
                {"type": "search", "session_id": f"s{s}", "query": "sofa", "results": before}
            )
            events.append(
                {
                    "type": "click",
                    "session_id": f"s{s}",
                    "query": "sofa",
                    "product_id": favourite,
                    "position": len(before),
                }
            )
            if s % 3 == 0:
                events.append(
                    {
                        "type": "purchase",
                        "session_id": f"s{s}",
                        "query": "sofa",
                        "product_id": favourite,
                    }
                )
        response = client.post("/events", json={"events": events})
        assert response.status_code == 200
        refresh(client)

        after = ids(client, q="sofa")
        assert after.index(favourite) < before.index(favourite)
        body = client.get("/search", params={"q": "sofa", "explain": "true"}).json()
        hit = next(h for h in body["hits"] if h["id"] == favourite)
        stages = {a["stage"] for a in hit["explanation"]["adjustments"]}
        assert stages & {"behaviour", "behavioural"}

    def test_forgotten_user_events_are_gone(self, client: TestClient) -> None:
        client.post(
            "/events",
            json={
                "events": [
                    {"type": "view", "user_id": "u1", "session_id": "x", "product_id": "SOFA-1"}
                ]
            },
        )
        response = client.delete("/users/u1")
        assert response.status_code == 200
        assert response.json()["events_deleted"] >= 1


class TestSuggestApi:
    def test_popular_past_queries_then_catalogue(self, client: TestClient) -> None:
        events = [
            {"type": "search", "session_id": f"s{i}", "query": "Oak dining set", "results": []}
            for i in range(5)
        ]
        assert client.post("/events", json={"events": events}).status_code == 200
        refresh(client)
        body = client.get("/suggest", params={"q": "oak d"}).json()
        assert body["suggestions"][0] == {
            "text": "oak dining set",
            "kind": "query",
            "score": 5.0,
            "corrected": False,
        }
        assert any(s["kind"] == "catalogue" for s in body["suggestions"])

    def test_misspelt_prefix(self, client: TestClient) -> None:
        body = client.get("/suggest", params={"q": "walnot"}).json()
        assert body["suggestions"][0]["text"].startswith("walnut")
        assert body["suggestions"][0]["corrected"] is True

    def test_bad_k_is_422(self, client: TestClient) -> None:
        assert client.get("/suggest", params={"q": "oak", "k": 0}).status_code == 422


class TestPersonalisedSuggestions:
    def test_a_shoppers_favourite_category_comes_first(self, client: TestClient) -> None:
        plain = [s["text"] for s in client.get("/suggest", params={"q": "c"}).json()["suggestions"]]
        assert "cushion" in plain and "chair" in plain
        views = [
            {"type": "view", "user_id": "u7", "session_id": "x7", "product_id": "CUSHION-1"}
            for _ in range(6)
        ]
        assert client.post("/events", json={"events": views}).status_code == 200
        refresh(client)
        mine = client.get("/suggest", params={"q": "c", "user_id": "u7"}).json()["suggestions"]
        texts = [s["text"] for s in mine]
        # Words of the viewed "Linen cushion cover" now come before the others.
        assert set(texts[:2]) == {"cushion", "cover"}
        assert texts.index("chair") > 1
        other = client.get("/suggest", params={"q": "c", "user_id": "someone-else"}).json()
        assert [s["text"] for s in other["suggestions"]] == plain


class TestStrengthsAreMerchandisingWeights:
    """``/admin/weights`` sets the behaviour and personalisation strengths at run time, and the
    preview ranks with them exactly as the service will once they are saved."""

    @staticmethod
    def _teach(client: TestClient, favourite: str, before: list[str]) -> None:
        events = []
        for s in range(30):
            events.append(
                {"type": "search", "session_id": f"s{s}", "query": "sofa", "results": before}
            )
            events.append(
                {
                    "type": "click",
                    "session_id": f"s{s}",
                    "query": "sofa",
                    "product_id": favourite,
                    "position": len(before),
                }
            )
            events.append(
                {
                    "type": "purchase",
                    "session_id": f"s{s}",
                    "query": "sofa",
                    "product_id": favourite,
                }
            )
        assert client.post("/events", json={"events": events}).status_code == 200
        refresh(client)

    def test_behaviour_weight_zero_turns_it_off_and_back(self, client: TestClient) -> None:
        before = ids(client, q="sofa")
        favourite = before[-1]
        self._teach(client, favourite, before)
        taught = ids(client, q="sofa")
        assert taught.index(favourite) < before.index(favourite)

        _, token = client.app.state.security.keys.create("merch", "admin")  # type: ignore[attr-defined]
        admin = {"Authorization": f"Bearer {token}"}
        _, search = client.app.state.security.keys.create("shop", "search")  # type: ignore[attr-defined]
        shop = {"Authorization": f"Bearer {search}"}

        preview = client.post(
            "/admin/preview",
            json={"q": "sofa", "k": 10, "weights": {"behaviour": 0}},
            headers=admin,
        )
        assert preview.status_code == 200, preview.text
        after_ids = [h["id"] for h in preview.json()["after"]["hits"]]
        before_ids = [h["id"] for h in preview.json()["before"]["hits"]]
        assert before_ids[: len(taught)] == taught
        assert after_ids.index(favourite) > before_ids.index(favourite)

        saved = client.put("/admin/weights", json={"behaviour": 0}, headers=admin)
        assert saved.status_code == 200, saved.text
        body = client.get(
            "/search", params={"q": "sofa", "as_you_type": "false", "explain": "true"}, headers=shop
        ).json()
        served = [h["id"] for h in body["hits"]]
        assert served == after_ids[: len(served)]  # preview equals the ranking after saving
        hit = next(h for h in body["hits"] if h["id"] == favourite)
        assert not {a["stage"] for a in hit["explanation"]["adjustments"]} & {"behaviour"}

        assert (
            client.put("/admin/weights", json={"behaviour": 0.5}, headers=admin).status_code == 200
        )
        again = client.get(
            "/search", params={"q": "sofa", "as_you_type": "false"}, headers=shop
        ).json()
        assert [h["id"] for h in again["hits"]] == taught

    def test_personalisation_strength_follows_the_weights(self, client: TestClient) -> None:
        _, token = client.app.state.security.keys.create("merch", "admin")  # type: ignore[attr-defined]
        admin = {"Authorization": f"Bearer {token}"}
        assert (
            client.put("/admin/weights", json={"personalisation": 0.7}, headers=admin).status_code
            == 200
        )
        engine = client.app.state.engine  # type: ignore[attr-defined]
        client.get("/search", params={"q": "sofa"}, headers=admin)  # picks the version up
        state = client.app.state  # type: ignore[attr-defined]
        assert state.tuning.weights.personalisation == 0.7
        # The strength is a value each search is handed, not a rebuilt engine.
        assert state.engine is engine
        assert (
            client.put("/admin/weights", json={"personalisation": 0}, headers=admin).status_code
            == 200
        )
        client.get("/search", params={"q": "sofa"}, headers=admin)
        assert state.tuning.weights.personalisation == 0
        assert state.engine is engine
