"""Server-side impressions: every search answer has a ``query_id``, the service records what it
showed, events refer to it, analytics see every answered search (issue 15 §4 and §8); and
``POST /events`` takes a ``user_id`` without a ``session_id`` (§8)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from events.store import served_event_id
from tests.api import build_snapshot


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        index_dir=build_snapshot(tmp_path),
        text_embedder="none",
        events_db=str(tmp_path / "events.sqlite3"),
        behaviour_refresh_s=3600,
        keys_db=None,
    )
    app = create_app(settings)
    # Analytics need an admin key (also in open mode); it reaches every route.
    _, admin = app.state.security.keys.create("ops", "admin", rate_per_minute=100_000, burst=10_000)
    with TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as test_client:
        yield test_client


def state(client: TestClient) -> Any:
    return client.app.state  # type: ignore[attr-defined]


def search(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/search", params={"as_you_type": "false", **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post(client: TestClient, *events: dict[str, Any]) -> Any:
    return client.post("/events", json={"events": list(events)})


class TestQueryIds:
    def test_every_answer_has_an_id_and_is_recorded(self, client: TestClient) -> None:
        body = search(client, q="sofa", session_id="s1", k=2, page=2)
        assert re.fullmatch(r"[0-9a-f]{32}", body["query_id"])
        state(client).impressions.flush()
        record = state(client).event_store.get_event(served_event_id(body["query_id"]))
        assert record.query == "sofa" and record.session_id == "s1"
        assert list(record.results) == [h["id"] for h in body["hits"]]
        assert record.position == 3  # page 2 of 2 per page starts at #3

    def test_ids_differ_per_answer_and_a_browse_has_none(self, client: TestClient) -> None:
        assert search(client, q="sofa")["query_id"] != search(client, q="sofa")["query_id"]
        assert search(client, q="")["query_id"] is None

    def test_a_click_gets_the_position_the_service_showed(self, client: TestClient) -> None:
        body = search(client, q="sofa", session_id="s1")
        last = body["hits"][-1]["id"]
        click = {
            "type": "click",
            "session_id": "s1",
            "product_id": last,
            "query_id": body["query_id"],
            "position": 1,  # claimed; the record says otherwise
        }
        response = post(client, click)
        assert response.status_code == 200, response.text
        stored = [e for e in state(client).event_store.scan() if e.type.value == "click"]
        assert (stored[0].position, stored[0].query) == (len(body["hits"]), "sofa")

    @pytest.mark.parametrize(
        ("change", "words"),
        [({"query_id": "f" * 32}, "unknown"), ({"session_id": "intruder"}, "another shopper")],
    )
    def test_unknown_or_foreign_query_ids_are_rejected(
        self, client: TestClient, change: dict[str, str], words: str
    ) -> None:
        body = search(client, q="sofa", session_id="s1")
        click = {
            "type": "click",
            "session_id": "s1",
            "product_id": body["hits"][0]["id"],
            "query_id": body["query_id"],
        }
        response = post(client, {**click, **change})
        assert response.status_code == 422
        error = response.json()["events"][0]["errors"][0]
        assert error["loc"][-1] == "query_id" and words in error["msg"]


class TestAnalyticsSeeEveryAnswer:
    def test_a_zero_result_search_sent_straight_to_the_api_is_counted(
        self, client: TestClient
    ) -> None:
        assert search(client, q="xyzzy plugh")["total"] == 0
        search(client, q="sofa")
        body = client.get("/analytics/queries", params={"order": "zero_results"}).json()
        rows = {r["query"]: r for r in body["queries"]}
        assert rows["xyzzy plugh"]["zero_result_searches"] == 1
        top = client.get("/analytics/queries").json()["queries"]
        assert {r["query"] for r in top} >= {"xyzzy plugh", "sofa"}


class TestUserWithoutSession:
    def test_an_event_with_only_a_user_id_is_accepted(self, client: TestClient) -> None:
        response = post(client, {"type": "view", "user_id": "u1", "product_id": "SOFA-1"})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1
        assert client.delete("/users/u1").json()["events_deleted"] == 1

    def test_neither_is_rejected_naming_session_id(self, client: TestClient) -> None:
        response = post(client, {"type": "view", "product_id": "SOFA-1"})
        assert response.status_code == 422
        assert response.json()["events"][0]["errors"][0]["loc"][-1] == "session_id"
