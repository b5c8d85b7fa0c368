"""Server-side impressions: every search answer has a ``query_id``, the service records what it
showed, events refer to it, analytics see every answered search (issue 15 §4 and §8), photo and
voice answers included; and ``POST /events`` takes a ``user_id`` without a ``session_id`` (§8)."""

from __future__ import annotations

import io
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from events.store import served_event_id
from indexer.build import BuildConfig
from indexer.build import build_snapshot as build_products
from search.types import Product
from tests.api import build_snapshot
from tests.api.test_photo_search import draw, png
from tests.api.test_voice import ScriptedRecognizer, tone


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
    # Voice searches hear what a test tells this recogniser (no model: the API path only).
    app.state.speech_recognizer = ScriptedRecognizer([("sofa", 0.9)])
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


def click(client: TestClient, body: dict[str, Any], n: int, **shopper: str) -> Any:
    """Click the ``n``-th hit (1-based) of an answer, citing its ``query_id`` and nothing else
    about the search; returns the stored click."""
    event = {"type": "click", "product_id": body["hits"][n - 1]["id"], "query_id": body["query_id"]}
    response = post(client, {**event, **shopper})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    clicks = [e for e in state(client).event_store.scan() if e.type.value == "click"]
    return clicks[-1]


def analytics(client: TestClient) -> dict[str, dict[str, Any]]:
    body = client.get("/analytics/queries").json()
    return {row["query"]: row for row in body["queries"]}


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


def wav(seconds: float = 1.0) -> bytes:
    """A 16 kHz mono WAV the scripted recogniser 'hears'."""
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16_000)
        file.writeframes((tone(seconds) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def hear(client: TestClient, *readings: tuple[str, float]) -> None:
    state(client).speech_recognizer.readings = list(readings)


def voice(client: TestClient, **form: str) -> dict[str, Any]:
    response = client.post(
        "/search/voice", files={"audio": ("q.wav", wav(), "audio/wav")}, data=form
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestVoiceAnswers:
    def test_an_upload_answer_is_recorded_and_its_clicks_attributed(
        self, client: TestClient
    ) -> None:
        body = voice(client, session_id="s1")
        assert re.fullmatch(r"[0-9a-f]{32}", body["query_id"]) and len(body["hits"]) >= 2

        stored = click(client, body, 2, session_id="s1")

        assert (stored.query, stored.position, stored.query_id) == ("sofa", 2, body["query_id"])

    def test_analytics_count_voice_searches_under_the_query_searched(
        self, client: TestClient
    ) -> None:
        # The recogniser slightly prefers a misheard reading; the one that fits the catalogue
        # is searched, and that is what analytics count (not the misheard transcript).
        hear(client, ("oak dining chore", 0.81), ("oak dining chair", 0.80))
        body = voice(client, session_id="s1")
        voice(client, session_id="s2")
        assert (body["transcript"], body["query"]) == ("oak dining chore", "oak dining chair")

        rows = analytics(client)

        assert rows["oak dining chair"]["searches"] == 2
        assert rows["oak dining chair"]["search_sessions"] == 2
        assert "oak dining chore" not in rows

    def test_no_speech_is_not_recorded(self, client: TestClient) -> None:
        hear(client, ("", 0.5))
        body = voice(client, session_id="s1")

        assert body["message"] and body["query_id"] is None
        assert not analytics(client)

    def test_a_stream_answer_is_recorded_and_its_clicks_attributed(
        self, client: TestClient
    ) -> None:
        samples = (tone() * 32767).astype("<i2").tobytes()
        with client.websocket_connect("/search/voice/stream?session_id=s7") as ws:
            ws.send_bytes(samples)
            ws.send_text("end")
            while (message := ws.receive_json())["type"] == "partial":
                assert "query_id" not in message  # partials are keystrokes, not answers
        assert message["type"] == "final", message
        assert re.fullmatch(r"[0-9a-f]{32}", message["query_id"])

        stored = click(client, message, 1, session_id="s7")

        assert (stored.query, stored.position) == ("sofa", 1)
        assert analytics(client)["sofa"]["searches"] == 1

    def test_another_shoppers_click_on_a_voice_answer_is_refused(self, client: TestClient) -> None:
        body = voice(client, session_id="s1")
        event = {
            "type": "click",
            "session_id": "intruder",
            "product_id": body["hits"][0]["id"],
            "query_id": body["query_id"],
        }
        response = post(client, event)
        assert response.status_code == 422
        assert "another shopper" in response.json()["events"][0]["errors"][0]["msg"]


@pytest.fixture()
def photo_client(tmp_path: Path) -> Iterator[TestClient]:
    products = []
    for kind, rgb in (("shirt", (200, 25, 30)), ("shirt", (20, 20, 22)), ("lamp", (30, 60, 170))):
        path = tmp_path / f"{kind}-{rgb[0]}.png"
        draw(kind, rgb).save(path)
        products.append(Product(f"{kind}-{rgb[0]}", f"cotton {kind}", images=(str(path),)))
    build_products(
        products,
        tmp_path / "snap",
        config=BuildConfig(embedder="none", image_embedder="descriptor"),
    )
    settings = Settings(
        index_dir=tmp_path / "snap",
        text_embedder="none",
        events_db=str(tmp_path / "events.sqlite3"),
        behaviour_refresh_s=3600,
        keys_db=None,
    )
    app = create_app(settings)
    _, admin = app.state.security.keys.create("ops", "admin", rate_per_minute=100_000, burst=10_000)
    with TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as test_client:
        yield test_client


def photo_search(client: TestClient, **form: str) -> dict[str, Any]:
    photo = png(draw("shirt", (195, 30, 35), size=120))
    response = client.post(
        "/search/image", files={"image": ("me.png", photo, "image/png")}, data=form
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestPhotoAnswers:
    def test_a_photo_with_text_is_recorded_under_its_text(self, photo_client: TestClient) -> None:
        body = photo_search(photo_client, q="shirt", session_id="s1", k="1", page="2")
        assert re.fullmatch(r"[0-9a-f]{32}", body["query_id"])

        stored = click(photo_client, body, 1, session_id="s1")

        assert (stored.query, stored.position) == ("shirt", 2)  # page 2 of 1 per page
        assert analytics(photo_client)["shirt"]["searches"] == 1

    def test_a_photo_alone_puts_no_query_in_analytics(self, photo_client: TestClient) -> None:
        photo_search(photo_client, session_id="s1")

        assert not analytics(photo_client)

    def test_a_photo_alone_has_a_query_id_its_clicks_cite(self, photo_client: TestClient) -> None:
        body = photo_search(photo_client, session_id="s1")
        assert re.fullmatch(r"[0-9a-f]{32}", str(body["query_id"]))

        stored = click(photo_client, body, 2, session_id="s1")

        assert (stored.query, stored.position) == (None, 2)
        assert not analytics(photo_client)
