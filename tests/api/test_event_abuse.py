"""Forged and accidental events (issue 15 §4): shared signals need several distinct shoppers,
one session or user moves nothing for others, a lone view is no verdict, and a request's
events are bounded; genuine crowd evidence still moves rankings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.events import MAX_BATCH
from api.settings import Settings
from tests.api import write_catalogue

ADJECTIVES = (
    "grey", "navy", "green", "oak", "walnut", "linen", "velvet", "leather", "corner", "modular",
    "compact", "large", "small", "retro", "nordic", "classic", "modern", "rustic", "soft",
    "firm", "deep", "low", "high", "wide", "narrow", "curved", "square", "round", "plush",
    "slim", "cosy", "bold", "pale", "dark", "light", "warm", "cool", "bright", "quiet", "calm",
)  # fmt: skip


def catalogue_rows() -> list[dict[str, Any]]:
    """Forty sofas and forty table lamps whose titles score differently for their query."""
    rows: list[dict[str, Any]] = []
    for i, adjective in enumerate(ADJECTIVES):
        # Longer titles score lower under BM25: a stable, distinct order for "sofa".
        filler = " ".join(ADJECTIVES[: i % 7])
        rows.append(
            {
                "id": f"SOFA-{i:02d}",
                "title": f"{adjective} sofa {filler}".strip(),
                "brand": f"Maker{i % 4}",
                "categories": [["Furniture", "Sofas"]],
            }
        )
        rows.append({"id": f"LAMP-{i:02d}", "title": f"{adjective} table lamp {filler}".strip()})
    return rows


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    from indexer.build import BuildConfig, build_from_catalogue

    catalogue = write_catalogue(tmp_path / "catalogue.jsonl", catalogue_rows())
    snapshot = build_from_catalogue(
        catalogue, tmp_path / "snapshot", fmt="jsonl", config=BuildConfig(embedder="none")
    ).snapshot_dir
    settings = Settings(
        index_dir=snapshot,
        text_embedder="none",
        events_db=str(tmp_path / "events.sqlite3"),
        behaviour_refresh_s=3600,  # refreshed by hand below
        client_rate_per_minute=0,  # the test client is one address making many shoppers' calls
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def search(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/search", params={"as_you_type": "false", "k": 40, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(client: TestClient, **params: Any) -> list[str]:
    return [h["id"] for h in search(client, **params)["hits"]]


def refresh(client: TestClient) -> None:
    state: Any = client.app.state  # type: ignore[attr-defined]
    recorder = getattr(state, "impressions", None)
    if recorder is not None:
        recorder.flush()
    state.signals_refresher.refresh()


def post(client: TestClient, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 100):
        response = client.post("/events", json={"events": events[start : start + 100]})
        assert response.status_code == 200, response.text


def push(query: str, product: str, shown: list[str], n: int, **who: str) -> list[dict[str, Any]]:
    """``n`` events from one actor pushing ``product`` for ``query`` (as in the issue)."""
    first = [product] + [p for p in shown if p != product]
    kinds = ("search", "click", "view", "add_to_cart", "purchase")
    events: list[dict[str, Any]] = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        actor = {k: v.format(i=i) for k, v in who.items()}
        if kind == "search":
            events.append({**actor, "type": kind, "query": query, "results": first[:30]})
        else:
            event: dict[str, Any] = {
                **actor,
                "type": kind,
                "query": query,
                "product_id": product,
            }
            if kind == "click":
                event["position"] = 1
            events.append(event)
    return events


class TestLoneView:
    @pytest.mark.parametrize("which", [0, 4])
    def test_one_view_without_a_click_moves_nothing(self, client: TestClient, which: int) -> None:
        before = ids(client, q="table lamp")
        post(
            client,
            [
                {
                    "type": "view",
                    "session_id": "v1",
                    "product_id": before[which],
                    "query": "table lamp",
                }
            ],
        )
        refresh(client)
        assert ids(client, q="table lamp") == before

    def test_one_search_without_a_click_moves_nothing(self, client: TestClient) -> None:
        before = ids(client, q="table lamp")
        post(
            client,
            [{"type": "search", "session_id": "v1", "query": "table lamp", "results": before}],
        )
        refresh(client)
        assert ids(client, q="table lamp") == before


class TestSingleActor:
    @pytest.mark.parametrize(
        "who",
        [{"session_id": "attacker"}, {"user_id": "attacker", "session_id": "s{i}"}],
        ids=["one-session", "one-user"],
    )
    def test_900_events_do_not_lift_a_deep_product_for_others(
        self, client: TestClient, who: dict[str, str]
    ) -> None:
        before = ids(client, q="sofa")
        deep = before[29]
        post(client, push("sofa", deep, before, 900, **who))
        refresh(client)
        assert ids(client, q="sofa") == before  # another shopper: nothing moved
        assert ids(client, q="sofa", session_id="bystander") == before

    def test_a_request_of_hundreds_of_events_is_refused_naming_the_limit(
        self, client: TestClient
    ) -> None:
        events = push("sofa", "SOFA-29", [], 900, session_id="attacker")
        response = client.post("/events", json={"events": events})
        assert response.status_code == 413
        assert str(MAX_BATCH) in response.json()["detail"]
        assert client.app.state.event_store.count() == 0  # type: ignore[attr-defined]

    def test_a_shopper_still_personalises_their_own_results(self, client: TestClient) -> None:
        before = ids(client, q="sofa")
        favourite = before[9]
        post(
            client,
            [
                {"type": kind, "user_id": "fan", "session_id": "fan-1", "product_id": favourite}
                for kind in ("view", "click", "add_to_cart", "view", "click")
            ],
        )
        refresh(client)
        assert ids(client, q="sofa") == before
        mine = ids(client, q="sofa", user_id="fan")
        assert mine != before
        assert mine.index(favourite) < before.index(favourite)


class TestForgedSuggestions:
    @pytest.mark.parametrize("sessions", [("a", "a"), ("a", "b")])
    def test_two_forged_searches_do_not_become_a_suggestion(
        self, client: TestClient, sessions: tuple[str, str]
    ) -> None:
        scam = "sofa refunds call +1 555 0100"
        post(
            client,
            [{"type": "search", "session_id": s, "query": scam, "results": []} for s in sessions],
        )
        refresh(client)
        body = client.get("/suggest", params={"q": "sof"}).json()
        assert scam not in [s["text"] for s in body["suggestions"]]

    def test_a_query_many_shoppers_type_is_suggested_not_its_keystrokes(
        self, client: TestClient
    ) -> None:
        for s in range(4):
            for end in range(1, len("sofa green") + 1):  # search as you type
                search(client, q="sofa green"[:end], session_id=f"shopper-{s}")
        refresh(client)
        body = client.get("/suggest", params={"q": "so"}).json()
        assert body["suggestions"][0] == {
            "text": "sofa green",
            "kind": "query",
            "score": pytest.approx(4.0, rel=1e-3),
            "corrected": False,
        }
        assert [s["text"] for s in body["suggestions"] if s["kind"] == "query"] == ["sofa green"]


class TestCrowd:
    def test_25_shoppers_choosing_a_deep_product_lift_it_to_the_top_3(
        self, client: TestClient
    ) -> None:
        before = ids(client, q="sofa")
        chosen = before[19]
        for s in range(25):
            body = search(client, q="sofa", session_id=f"c{s}", user_id=f"cu{s}")
            shown = [h["id"] for h in body["hits"]]
            events: list[dict[str, Any]] = [
                {
                    "type": "click",
                    "session_id": f"c{s}",
                    "user_id": f"cu{s}",
                    "product_id": chosen,
                    "query_id": body["query_id"],
                }
            ]
            if s % 3 == 0:
                events.append({**events[0], "type": "add_to_cart"})
            post(client, events)
            assert chosen in shown
        refresh(client)
        assert ids(client, q="sofa").index(chosen) < 3
