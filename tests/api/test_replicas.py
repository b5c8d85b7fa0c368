"""Two service replicas on loopback sharing one snapshot folder and one Redis event store.

Each replica is a real ``uvicorn api.app:create_app --factory`` process (the Docker image's
entry point) configured only through ``PRODUCTSEARCH_*`` variables, as in ``compose.yaml``:

* events posted to replica A change behavioural ranking and popular suggestions on replica B
  once B's background refresher has run;
* merchandising rules and API keys saved on A apply on B (both share the SQLite files, as
  replicas on one host sharing a volume do);
* SIGKILL of a replica while it ingests loses no acknowledged event;
* a user erased on replica A stops being personalised for on replica B within B's next refresh
  (the erasure log in the shared store);
* SIGKILL of Redis while a replica ingests loses no acknowledged event once Redis restarts from
  its append-only file, and both replicas go on folding new events afterwards;
* while Redis is stopped, ``POST /events`` and ``DELETE /users/{id}`` answer 503 with
  ``Retry-After`` (searches go on), and once it is back the same requests succeed.

Skipped, saying why, without ``redis-server`` or the ``redis`` package.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.security import KeyStore
from events.factory import open_event_store
from tests.api import build_snapshot
from tests.events.test_redis_store import RedisServer, free_port

REPO = Path(__file__).resolve().parents[2]
REFRESH_S = 0.2
WAIT_S = 30.0


class Replica:
    """One service process.

    Args:
        name: ``"a"`` or ``"b"`` (names its log file).
        env: Its environment.
        folder: Where its log goes.
    """

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.env = env
        self.log = folder / f"replica-{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Launch the process (returns at once; see :meth:`wait_ready`)."""
        with self.log.open("ab") as log:  # a file, not a pipe: a full pipe would stall it
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "api.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        """Wait for ``/ready`` to answer 200 (snapshot open, events folded once)."""
        deadline = time.monotonic() + 180  # a minute is common on a busy 2-core machine
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"replica {self.name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the process with ``sig``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


class Cluster:
    """Redis, a snapshot, two replicas, and an HTTP client per replica (admin key)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.redis = RedisServer(folder / "redis")
        self.redis.start()
        snapshot = build_snapshot(folder)
        keys_db = folder / "var" / "keys.sqlite3"
        keys = KeyStore(keys_db)
        _, self.token = keys.create("ops", "admin", rate_per_minute=1_000_000, burst=100_000)
        keys.close()
        self.events_url = f"{self.redis.url}?prefix=replicas-test"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "PRODUCTSEARCH_INDEX_DIR": str(snapshot),
            "PRODUCTSEARCH_TEXT_EMBEDDER": "none",
            "PRODUCTSEARCH_EVENTS_DB": self.events_url,
            "PRODUCTSEARCH_BEHAVIOUR_REFRESH_S": str(REFRESH_S),
            "PRODUCTSEARCH_KEYS_DB": str(keys_db),
            "PRODUCTSEARCH_MERCH_DB": str(folder / "var" / "merch.sqlite3"),
            "PRODUCTSEARCH_SPEECH_RECOGNIZER": "none",
            "PRODUCTSEARCH_LOG_FORMAT": "text",
        }
        env.pop("PRODUCTSEARCH_CONFIG", None)
        self.a = Replica("a", env, folder)
        self.b = Replica("b", env, folder)
        for replica in (self.a, self.b):
            replica.start()
        for replica in (self.a, self.b):
            replica.wait_ready()

    def client(self, replica: Replica) -> httpx.Client:
        """An HTTP client for ``replica`` carrying the admin key."""
        return httpx.Client(base_url=replica.url, headers={"X-API-Key": self.token}, timeout=30)

    def restart(self, replica: Replica) -> None:
        """Kill ``replica`` if it runs and start it again on the same port."""
        replica.kill()
        replica.start()
        replica.wait_ready()

    def close(self) -> None:
        """Stop everything."""
        for replica in (self.a, self.b):
            replica.kill(signal.SIGTERM)
        self.redis.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("replicas"))
    try:
        yield c
    finally:
        c.close()


def ids(http: httpx.Client, **params: str) -> list[str]:
    response = http.get("/search", params={"as_you_type": "false", **params})
    assert response.status_code == 200, response.text
    return [h["id"] for h in response.json()["hits"]]


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait until ``check()`` holds (a few refresh intervals, generously on a busy machine)."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT_S:.0f} s: {what}"
        time.sleep(REFRESH_S)


def post(http: httpx.Client, events: list[dict[str, Any]]) -> None:
    response = http.post("/events", json={"events": events})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == 0


def top_suggestion(http: httpx.Client, prefix: str) -> dict[str, Any] | None:
    response = http.get("/suggest", params={"q": prefix})
    assert response.status_code == 200, response.text
    suggestions: list[dict[str, Any]] = response.json()["suggestions"]
    return suggestions[0] if suggestions else None


class TestSharedBehaviour:
    def test_events_posted_to_a_rerank_b(self, cluster: Cluster) -> None:
        with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
            before = ids(b, q="sofa")
            assert ids(a, q="sofa") == before  # one snapshot, one ranking
            favourite = before[-1]
            run = uuid.uuid4().hex[:8]
            events: list[dict[str, Any]] = []
            for s in range(30):
                session = f"{run}-{s}"
                events.append(
                    {"type": "search", "session_id": session, "query": "sofa", "results": before}
                )
                events.append(
                    {
                        "type": "click",
                        "session_id": session,
                        "query": "sofa",
                        "product_id": favourite,
                        "position": len(before),
                    }
                )
                if s % 3 == 0:
                    events.append(
                        {
                            "type": "purchase",
                            "session_id": session,
                            "query": "sofa",
                            "product_id": favourite,
                        }
                    )
            post(a, events)
            eventually(
                lambda: ids(b, q="sofa").index(favourite) < before.index(favourite),
                f"{favourite} rising for 'sofa' on replica B",
            )
            body = b.get("/search", params={"q": "sofa", "explain": "true"}).json()
            hit = next(h for h in body["hits"] if h["id"] == favourite)
            assert {a["stage"] for a in hit["explanation"]["adjustments"]} & {
                "behaviour",
                "behavioural",
            }

    def test_popular_queries_from_a_are_suggested_on_b(self, cluster: Cluster) -> None:
        with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
            top = top_suggestion(b, "oak d")
            assert top is None or top["kind"] != "query"
            searches = [
                {"type": "search", "session_id": f"sugg-{i}", "query": "Oak dining set"}
                for i in range(5)
            ]
            post(a, searches)
            eventually(
                lambda: (top_suggestion(b, "oak d") or {}).get("text") == "oak dining set",
                "'oak dining set' suggested on replica B",
            )
            assert top_suggestion(b, "oak d") == {
                "text": "oak dining set",
                "kind": "query",
                "score": 5.0,
                "corrected": False,
            }


def suggestions(http: httpx.Client, prefix: str, user_id: str) -> list[str]:
    response = http.get("/suggest", params={"q": prefix, "user_id": user_id})
    assert response.status_code == 200, response.text
    return [s["text"] for s in response.json()["suggestions"]]


class TestErasure:
    def test_forgetting_a_user_on_a_clears_their_profile_on_b(self, cluster: Cluster) -> None:
        user = f"gdpr-{uuid.uuid4().hex[:8]}"
        with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
            plain = suggestions(b, "c", "nobody")
            views = [
                {"type": "view", "user_id": user, "session_id": user, "product_id": "CUSHION-1"}
                for _ in range(6)
            ]
            post(a, views)
            eventually(
                lambda: suggestions(b, "c", user)[:2] != plain[:2], "B personalises for the user"
            )
            assert a.delete(f"/users/{user}").json()["events_deleted"] == 6
            assert suggestions(a, "c", user) == plain  # A forgot at once
            time.sleep(10 * REFRESH_S)  # several refreshes of B
            assert suggestions(b, "c", user) == plain


class TestSharedConfiguration:
    """Merchandising and keys live in SQLite files: shared by replicas on one host/volume."""

    def test_rules_and_keys_saved_on_a_apply_on_b(self, cluster: Cluster) -> None:
        with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
            hidden = ids(b, q="chair")[0]
            rule = {
                "id": f"hide-{uuid.uuid4().hex[:8]}",
                "match": "contains",
                "query": "chair",
                "actions": [{"type": "hide", "product_ids": [hidden]}],
            }
            created = a.post("/admin/rules", json=rule)
            assert created.status_code in (200, 201), created.text
            assert hidden not in ids(b, q="chair")  # B's very next search

            key = a.post("/admin/keys", json={"name": "storefront", "scope": "search"})
            assert key.status_code == 201, key.text
            token = key.json()["token"]
            response = httpx.get(
                f"{cluster.b.url}/search", params={"q": "sofa"}, headers={"X-API-Key": token}
            )
            assert response.status_code == 200
            deleted = a.delete(f"/admin/rules/{rule['id']}")
            assert deleted.status_code in (200, 204), deleted.text


def post_until_stopped(
    http: httpx.Client, stop: threading.Event, acknowledged: list[str], tag: str
) -> None:
    """Post batches of 100 clicks; record an event id only once its batch answered 200."""
    batch_no = 0
    while not stop.is_set():
        batch = [f"{tag}-{batch_no}-{i}" for i in range(100)]
        events = [
            {"type": "click", "session_id": tag, "product_id": "SOFA-1", "event_id": e}
            for e in batch
        ]
        try:
            response = http.post("/events", json={"events": events})
        except httpx.TransportError:
            response = None  # died mid-request: never acknowledged
        if response is not None and response.status_code == 200:
            acknowledged.extend(batch)
        else:
            time.sleep(0.05)
        batch_no += 1


def stored_ids(cluster: Cluster) -> set[str]:
    store = open_event_store(cluster.events_url)
    try:
        return {e.event_id for e in store.scan()}
    finally:
        store.close()


class TestFaults:
    def test_replica_killed_mid_ingest_loses_nothing_acknowledged(self, cluster: Cluster) -> None:
        acknowledged: list[str] = []
        stop = threading.Event()
        tag = f"kill-a-{uuid.uuid4().hex[:8]}"
        with cluster.client(cluster.a) as a:
            poster = threading.Thread(target=post_until_stopped, args=(a, stop, acknowledged, tag))
            poster.start()
            try:
                eventually(lambda: len(acknowledged) >= 2000, "2,000 events acknowledged by A")
                cluster.a.kill()  # SIGKILL while the poster keeps sending
            finally:
                stop.set()
                poster.join(timeout=60)
        missing = set(acknowledged) - stored_ids(cluster)
        assert not missing, f"{len(missing)} acknowledged events lost"
        with cluster.client(cluster.b) as b:
            assert b.get("/health").status_code == 200  # B never noticed
        cluster.restart(cluster.a)

    def test_redis_killed_and_restarted_keeps_acknowledged_events(self, cluster: Cluster) -> None:
        acknowledged: list[str] = []
        stop = threading.Event()
        tag = f"kill-redis-{uuid.uuid4().hex[:8]}"
        with cluster.client(cluster.b) as b:
            poster = threading.Thread(target=post_until_stopped, args=(b, stop, acknowledged, tag))
            poster.start()
            try:
                eventually(lambda: len(acknowledged) >= 2000, "2,000 events acknowledged by B")
                cluster.redis.kill()  # a crash of Redis mid-ingest: unflushed data is gone
                with cluster.client(cluster.a) as a:  # searches need no Redis: last signals serve
                    assert ids(a, q="sofa")
                time.sleep(1.0)  # B answers errors meanwhile: those batches are not acknowledged
                cluster.redis.start()  # same port and folder: replays the append-only file
                seen = len(acknowledged)
                eventually(lambda: len(acknowledged) > seen + 500, "B ingesting again")
            finally:
                stop.set()
                poster.join(timeout=60)
        missing = set(acknowledged) - stored_ids(cluster)
        assert not missing, f"{len(missing)} acknowledged events lost"

        # Both replicas' refreshers reconnected and fold what is new (numbered after the old).
        with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
            searches = [
                {"type": "search", "session_id": f"after-{i}", "query": "walnut bench set"}
                for i in range(3)
            ]
            post(a, searches)
            for http, name in ((a, "A"), (b, "B")):

                def suggested(http: httpx.Client = http) -> bool:
                    top = top_suggestion(http, "walnut b") or {}
                    return bool(top.get("text") == "walnut bench set")

                eventually(
                    suggested,
                    f"'walnut bench set' suggested on replica {name} after the Redis restart",
                )


class TestStoreDown:
    def test_redis_stopped_answers_503_then_recovers(self, cluster: Cluster) -> None:
        user = f"down-{uuid.uuid4().hex[:8]}"
        batch = {
            "events": [
                {"type": "view", "user_id": user, "session_id": user, "product_id": "SOFA-1"}
            ]
        }
        headers = {"Idempotency-Key": f"batch-{user}"}
        with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
            cluster.redis.kill(signal.SIGTERM)
            try:
                for response in (
                    a.post("/events", json=batch, headers=headers),
                    b.delete(f"/users/{user}"),
                ):
                    assert response.status_code == 503, response.text
                    assert int(response.headers["Retry-After"]) > 0
                    assert "retry" in response.json()["detail"]
                assert ids(b, q="sofa")  # searches need no Redis
            finally:
                cluster.redis.start()  # same port and files
            # The retried batch was not stored by the failed attempt: accepted now, once.
            retried = a.post("/events", json=batch, headers=headers)
            assert retried.status_code == 200, retried.text
            assert (retried.json()["accepted"], retried.json()["duplicates"]) == (1, 0)
            erased = b.delete(f"/users/{user}")
            assert erased.status_code == 200, erased.text
            assert erased.json()["events_deleted"] == 1
