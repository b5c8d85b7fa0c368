"""``POST /events``, ``DELETE /users/{id}`` and ``GET /analytics/queries``, 503 while the store
cannot be reached, and a real server killed with SIGKILL mid-ingest losing no acknowledged
event."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.events import get_event_store
from api.settings import Settings
from events.profiles import ProfileAggregator
from events.signals import SignalsRefresher
from events.store import SQLiteEventStore
from search.rank.personal import Catalogue
from tests.api import PRODUCTS, build_snapshot


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("events-api"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteEventStore]:
    s = SQLiteEventStore(tmp_path / "events.sqlite3")
    yield s
    s.close()


@pytest.fixture
def app(snapshot_dir: Path, store: SQLiteEventStore) -> FastAPI:
    application = create_app(Settings(index_dir=snapshot_dir, text_embedder="none"))
    application.dependency_overrides[get_event_store] = lambda: store
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # Erasure and analytics need an admin key (also in open mode); it reaches /events too.
    _, admin = app.state.security.keys.create("ops", "admin", rate_per_minute=100_000, burst=10_000)
    with TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as test_client:
        yield test_client


def click(**fields: Any) -> dict[str, Any]:
    return {"type": "click", "session_id": "s1", "product_id": "SOFA-1", **fields}


class TestPostEvents:
    def test_good_events_are_kept_bad_ones_listed(
        self, client: TestClient, store: SQLiteEventStore
    ) -> None:
        batch = [
            click(user_id="u1", query="sofa", position=1),
            {"type": "purchase", "session_id": "s1"},
            {"type": "search", "session_id": "s1", "query": "sofa", "results": ["SOFA-1"]},
            "not an object",
        ]
        response = client.post("/events", json={"events": batch})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 2)
        statuses = [e["status"] for e in body["events"]]
        assert statuses == ["accepted", "rejected", "accepted", "rejected"]
        assert body["events"][1]["errors"] == [
            {
                "loc": ["body", "events", 1, "product_id"],
                "msg": "is required for a purchase event",
                "type": "value_error",
            }
        ]
        assert body["events"][3]["errors"][0]["loc"] == ["body", "events", 3, "*"]
        assert store.count() == 2

    def test_all_bad_is_422_with_the_same_shape(
        self, client: TestClient, store: SQLiteEventStore
    ) -> None:
        response = client.post(
            "/events", json={"events": [{"type": "teleport", "session_id": "s"}, click(position=0)]}
        )
        assert response.status_code == 422
        body = response.json()
        assert body["accepted"] == 0 and body["rejected"] == 2
        assert body["events"][0]["errors"][0]["loc"][-1] == "type"
        assert "valid: search, view, click" in body["events"][0]["errors"][0]["msg"]
        assert body["events"][1]["errors"][0]["loc"][-1] == "position"
        assert store.count() == 0

    def test_a_retried_batch_is_not_counted_twice(
        self, client: TestClient, store: SQLiteEventStore
    ) -> None:
        batch = {"events": [click(), click(type="view"), {"type": "bogus"}]}
        headers = {"Idempotency-Key": "batch-42"}
        first = client.post("/events", json=batch, headers=headers).json()
        again = client.post("/events", json=batch, headers=headers)
        assert again.status_code == 200
        body = again.json()
        assert (first["accepted"], body["accepted"], body["duplicates"]) == (2, 0, 2)
        assert [e["event_id"] for e in body["events"][:2]] == ["batch-42:0", "batch-42:1"]
        assert store.count() == 2

    def test_event_ids_dedupe_without_a_key(
        self, client: TestClient, store: SQLiteEventStore
    ) -> None:
        client.post("/events", json={"events": [click(event_id="e-1")]})
        body = client.post("/events", json={"events": [click(event_id="e-1")]}).json()
        assert body["events"][0]["status"] == "duplicate"
        assert store.count() == 1

    @pytest.mark.parametrize(
        ("payload", "headers"),
        [
            ({"events": []}, {}),
            ({"events": [click()] * 1001}, {}),
            ({}, {}),
            ([click()], {}),
            ({"events": [click()]}, {"Idempotency-Key": "bad key!"}),
        ],
    )
    def test_malformed_requests_are_422(
        self, client: TestClient, payload: Any, headers: dict[str, str]
    ) -> None:
        assert client.post("/events", json=payload, headers=headers).status_code == 422

    def test_store_opened_from_the_environment(
        self, snapshot_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        db = tmp_path / "from-env" / "events.sqlite3"
        monkeypatch.setenv("PRODUCTSEARCH_EVENTS_DB", str(db))
        application = create_app(Settings(index_dir=snapshot_dir, text_embedder="none"))
        with TestClient(application) as test_client:
            assert test_client.post("/events", json={"events": [click()]}).status_code == 200
        assert application.state.event_store is None  # closed by the lifespan at shutdown
        reopened = SQLiteEventStore(db)
        assert reopened.count() == 1
        reopened.close()


class TestForgetUser:
    def test_deletes_the_users_events_and_sessions(
        self, client: TestClient, store: SQLiteEventStore
    ) -> None:
        client.post(
            "/events",
            json={
                "events": [
                    click(user_id="alice", session_id="a1"),
                    click(session_id="a1"),
                    click(user_id="bob", session_id="b1"),
                ]
            },
        )
        response = client.delete("/users/alice")
        assert response.status_code == 200
        assert response.json() == {"user_id": "alice", "events_deleted": 2}
        assert [e.user_id for e in store.scan()] == ["bob"]
        assert client.delete("/users/alice").json()["events_deleted"] == 0

    def test_drops_in_memory_profiles_through_the_refresher(
        self, app: FastAPI, client: TestClient, store: SQLiteEventStore
    ) -> None:
        profiles = ProfileAggregator(Catalogue(PRODUCTS))
        refresher = SignalsRefresher(store, [profiles])
        app.state.signals_refresher = refresher
        client.post("/events", json={"events": [click(user_id="alice", session_id="a1")]})
        refresher.refresh()
        assert "user:alice" in profiles.snapshot.profiles
        assert client.delete("/users/alice").json()["events_deleted"] == 1
        assert not profiles.snapshot.profiles


class TestStoreUnavailable:
    """A store that cannot be reached answers 503 with Retry-After, and acknowledges nothing."""

    def assert_503(self, response: Any) -> None:  # TestClient and httpx responses alike
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert "nothing of this request was stored or erased" in response.json()["detail"]

    def test_closed_store(self, client: TestClient, store: SQLiteEventStore) -> None:
        store.close()  # as during a shutdown
        self.assert_503(client.post("/events", json={"events": [click()]}))
        self.assert_503(client.delete("/users/alice"))
        self.assert_503(client.get("/analytics/queries"))

    def test_sqlite_locked_beyond_its_timeout(
        self, app: FastAPI, client: TestClient, tmp_path: Path
    ) -> None:
        path = tmp_path / "locked.sqlite3"
        locked = SQLiteEventStore(path, timeout_s=0.2)
        app.dependency_overrides[get_event_store] = lambda: locked
        other = sqlite3.connect(path, isolation_level=None)
        try:
            client.post("/events", json={"events": [click(user_id="alice", session_id="a1")]})
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            batch = {"events": [click(event_id="e-2")]}
            self.assert_503(client.post("/events", json=batch))
            self.assert_503(client.delete("/users/alice"))
            assert locked.count() == 1 and locked.erasures_since(0) == []
            other.execute("ROLLBACK")
            retried = client.post("/events", json=batch)
            assert retried.status_code == 200
            assert retried.json()["accepted"] == 1  # the 503 had stored nothing
            assert client.delete("/users/alice").json()["events_deleted"] == 1
        finally:
            other.close()
            locked.close()


class TestQueryAnalytics:
    @pytest.fixture
    def filled(self, client: TestClient) -> float:
        now = time.time()
        events: list[dict[str, Any]] = []
        for s in range(4):
            events.append(
                {"type": "search", "session_id": f"s{s}", "query": "Sofa", "results": ["SOFA-1"]}
            )
        events += [
            click(session_id="s0", query="sofa", position=1),
            {"type": "purchase", "session_id": "s0", "product_id": "SOFA-1", "query": "sofa"},
            {"type": "search", "session_id": "z", "query": "unicorn", "results": []},
            {"type": "search", "session_id": "z2", "query": "unicorn", "results": []},
            {"type": "search", "session_id": "old", "query": "ancient", "timestamp": now - 86400},
        ]
        assert client.post("/events", json={"events": events}).json()["accepted"] == 9
        return now

    def test_top_queries(self, client: TestClient, filled: float) -> None:
        response = client.get("/analytics/queries", params={"start": filled - 3600})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["order"] == "searches"
        assert [q["query"] for q in body["queries"]] == ["sofa", "unicorn"]
        sofa = body["queries"][0]
        assert (sofa["searches"], sofa["clicks"], sofa["purchases"]) == (4, 1, 1)
        assert sofa["click_through_rate"] == pytest.approx(0.25)
        assert sofa["conversion_rate"] == pytest.approx(0.25)

    def test_zero_result_queries(self, client: TestClient, filled: float) -> None:
        body = client.get("/analytics/queries", params={"order": "zero_results"}).json()
        assert [(q["query"], q["zero_result_searches"]) for q in body["queries"]] == [
            ("unicorn", 2)
        ]
        assert body["queries"][0]["zero_result_rate"] == 1.0

    def test_time_range(self, client: TestClient, filled: float) -> None:
        body = client.get("/analytics/queries", params={"end": filled - 3600, "limit": 5}).json()
        assert [q["query"] for q in body["queries"]] == ["ancient"]

    @pytest.mark.parametrize(
        "params",
        [
            {"order": "popularity"},
            {"limit": 0},
            {"start": "2025-02-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"},
            {"start": "last tuesday"},
        ],
    )
    def test_bad_parameters_are_422(self, client: TestClient, params: dict[str, Any]) -> None:
        response = client.get("/analytics/queries", params=params)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][0] == "query"


_SERVER = """
import sys
import uvicorn
from api.app import create_app
from api.settings import Settings

app = create_app(Settings(index_dir=sys.argv[1], text_embedder="none"))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def test_no_event_acknowledged_over_http_is_lost_on_sigkill(
    snapshot_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "events.sqlite3"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PRODUCTSEARCH_EVENTS_DB": str(db)}
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(snapshot_dir), str(port)],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    acknowledged: list[str] = []
    stop = threading.Event()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.1)

            def post_forever() -> None:
                batch_no = 0
                while not stop.is_set():
                    ids = [f"{batch_no}-{i}" for i in range(100)]
                    events = [click(event_id=e) for e in ids]
                    try:
                        response = http.post("/events", json={"events": events})
                    except httpx.TransportError:
                        return  # the server died mid-request: that batch was never acknowledged
                    if response.status_code == 200:
                        acknowledged.extend(ids)
                    batch_no += 1

            poster = threading.Thread(target=post_forever)
            poster.start()
            deadline = time.monotonic() + 60
            while len(acknowledged) < 2000 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(server.pid, signal.SIGKILL)  # while the poster keeps sending
            server.wait(timeout=30)
            stop.set()
            poster.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 2000
    store = SQLiteEventStore(db)
    stored = {e.event_id for e in store.scan()}
    store.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
