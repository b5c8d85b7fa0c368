"""The Redis event store: the EventStore contract (the same tests as SQLite and PostgreSQL, the
erasure log included), atomic numbering under concurrent writers, forward compatibility, Redis
stopped (:class:`~search.errors.EventStoreUnavailableError`, then recovery), and durability of
acknowledged events when Redis itself is killed (AOF with ``appendfsync always``).

A real ``redis-server`` runs on a free loopback port with its files in a temporary folder; the
tests skip, saying why, when the binary (``apt-get install redis-server``) or the ``redis``
package is missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from events.factory import open_event_store
from events.store import Event, EventStore, EventType, ingest, parse_event
from search.errors import EventStoreUnavailableError
from tests.events import test_store as contract

REPO = Path(__file__).resolve().parents[2]
NOW = contract.NOW
event = contract.event


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A throw-away ``redis-server`` on loopback, durable as production should run it:
    AOF on, fsync'd before every answer, no RDB snapshots, no eviction.

    Args:
        folder: Where Redis keeps its append-only file (kept across :meth:`restart`).
        port: TCP port (a free one by default).
    """

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not found: apt-get install redis-server")
        pytest.importorskip(
            "redis", reason="the redis package is not installed (pip install redis)"
        )
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start Redis and wait until it answers PING (its AOF is loaded by then)."""
        import redis

        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    if self.proc.poll() is not None:
                        err = self.proc.stderr.read() if self.proc.stderr else b""
                        pytest.fail(f"redis-server exited: {err.decode(errors='replace')}")
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not answer within 30 s")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop Redis with ``sig`` (SIGKILL: a crash, nothing flushed on the way out)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        """Crash Redis (SIGKILL) and start it again on the same port and files."""
        self.kill()
        self.start()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the module's tests; each test uses its own key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)


def redis_store(server: RedisServer, prefix: str | None = None) -> EventStore:
    """A store on ``server`` under a fresh (or the given) key prefix, via ``open_event_store``."""
    prefix = prefix or f"test-{uuid.uuid4().hex}"
    return open_event_store(f"{server.url}?prefix={prefix}")


@pytest.fixture()
def store(redis_server: RedisServer) -> Iterator[EventStore]:
    """Overrides ``store`` for the contract tests inherited below."""
    s = redis_store(redis_server)
    try:
        yield s
    finally:
        s.close()


class TestRedisEventStoreContract(contract.TestEventStoreContract):
    """Every test of the SQLite/PostgreSQL contract, against Redis."""


class TestRedisEventStore:
    def test_open_event_store_picks_redis(self, store: EventStore) -> None:
        from events.redis_store import RedisEventStore

        assert isinstance(store, RedisEventStore)
        assert isinstance(store, EventStore)

    def test_prefixes_keep_stores_apart(self, redis_server: RedisServer) -> None:
        a, b = redis_store(redis_server), redis_store(redis_server)
        try:
            a.append([event("x")])
            assert b.count() == 0
            assert b.append([event("x")]) == [True]  # not a duplicate of the other namespace
        finally:
            a.close()
            b.close()

    def test_two_instances_of_one_prefix_are_one_store(self, redis_server: RedisServer) -> None:
        prefix = f"shared-{uuid.uuid4().hex}"
        a, b = redis_store(redis_server, prefix), redis_store(redis_server, prefix)
        try:
            assert a.append([event("1"), event("2")]) == [True, True]
            assert b.append([event("2"), event("3")]) == [False, True]
            assert [s.event.event_id for s in a.read_since(0)] == ["1", "2", "3"]
        finally:
            a.close()
            b.close()

    def test_every_field_round_trips(self, store: EventStore) -> None:
        events = [
            parse_event(
                {
                    "event_id": "s-1",
                    "type": "search",
                    "user_id": "u1",
                    "session_id": "s1",
                    "query": "Żółte  krzesło",
                    "results": ["A", "B"],
                    "channel": "APP",
                    "timestamp": NOW,
                },
                now=NOW,
            ),
            event("c-1", user_id="u1", query="oak chair", position=3, channel="web"),
        ]
        store.append(events)
        assert [s.event for s in store.read_since(0)] == events
        assert list(store.scan()) == events

    def test_sequence_numbers_are_never_reused(self, store: EventStore) -> None:
        store.append([event("a", timestamp=NOW - 100), event("b", timestamp=NOW - 100)])
        old_last = store.last_seq()
        assert store.purge_before(NOW) == 2
        assert store.count() == 0 and store.last_seq() == 0
        assert store.append([event("a")]) == [True]  # purged ids may come again
        assert store.read_since(0)[0].seq > old_last

    def test_purge_works_in_chunks(self, store: EventStore) -> None:
        old = [event(f"o{i}", timestamp=NOW - 100) for i in range(2_345)]
        for i in range(0, len(old), 1_000):
            store.append(old[i : i + 1_000])
        store.append([event("new")])
        assert store.purge_before(NOW - 10) == 2_345
        assert [e.event_id for e in store.scan()] == ["new"]
        assert store.purge_before(float("inf")) == 1

    def test_purge_then_forget_keeps_other_sessions(self, store: EventStore) -> None:
        store.append(
            [
                event("old", user_id="alice", session_id="s-old", timestamp=NOW - 100),
                event("anon", session_id="s-old", timestamp=NOW),  # no longer hers once purged
                event("now", user_id="alice", session_id="s-new", timestamp=NOW),
            ]
        )
        assert store.purge_before(NOW - 10) == 1
        assert store.forget_user("alice") == 1
        assert [e.event_id for e in store.scan()] == ["anon"]

    def test_scan_limits_and_types(self, store: EventStore) -> None:
        store.append(
            [event(f"e{i}", timestamp=NOW - i, type="view" if i % 2 else "click") for i in range(5)]
        )
        got = list(store.scan(NOW - 3, NOW, types=[EventType.VIEW]))
        assert [e.event_id for e in got] == ["e1", "e3"]
        assert [e.event_id for e in store.scan(NOW - 1.5)] == ["e0", "e1"]
        with pytest.raises(ValueError, match="NaN"):
            list(store.scan(float("nan")))

    def test_event_ahead_of_this_clock_is_still_read(self, store: EventStore) -> None:
        # Stored by a replica whose clock runs an hour ahead of this one's.
        ahead = Event("ahead", EventType.VIEW, "s", time.time() + 3600, product_id="P")
        store.append([ahead])
        assert store.read_since(0)[0].event == ahead

    def test_long_ids_from_idempotency_keys_are_read_back(self, store: EventStore) -> None:
        key = "k" * 100  # the API allows 100 characters: "<key>:<index>" exceeds 128
        outcome = ingest(store, [{"type": "view", "session_id": "s", "product_id": "P"}] * 2,
                         idempotency_key=key)  # fmt: skip
        assert len(outcome.accepted) == 2
        assert [e.event_id for e in store.scan()] == [f"{key}:0", f"{key}:1"]

    def test_fields_from_a_newer_version_are_dropped(self, store: EventStore) -> None:
        import orjson

        from events.redis_store import RedisEventStore

        assert isinstance(store, RedisEventStore)
        store.append([event("new-writer")])
        raw: Any = store._redis.hget(store._keys["events"], 1)
        doc = orjson.loads(raw)
        doc["field_from_the_future"] = {"x": 1}
        store._redis.hset(store._keys["events"], 1, orjson.dumps(doc))
        assert store.read_since(0)[0].event.event_id == "new-writer"

    def test_concurrent_writers_and_an_incremental_reader(self, redis_server: RedisServer) -> None:
        """Four writers on two "replicas"; a reader polling read_since meanwhile sees every
        event exactly once, in increasing seq order (no event committed behind its back)."""
        prefix = f"conc-{uuid.uuid4().hex}"
        writers = [redis_store(redis_server, prefix) for _ in range(2)]
        reader = redis_store(redis_server, prefix)
        seen: list[int] = []
        ids: list[str] = []
        done = threading.Event()

        def write(w: int) -> None:
            store = writers[w % 2]
            for b in range(25):
                batch = [event(f"{w}-{b}-{i}") for i in range(20)]
                batch.append(event(f"{w}-{b}-0"))  # a duplicate inside the batch
                assert store.append(batch)[-1] is False

        def read() -> None:
            last = 0
            while True:
                finished = done.is_set()
                for stored in reader.read_since(last, 97):
                    seen.append(stored.seq)
                    ids.append(stored.event.event_id)
                    last = stored.seq
                if finished and reader.last_seq() == last:
                    return

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        poller = threading.Thread(target=read)
        poller.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        poller.join(timeout=60)
        try:
            assert seen == sorted(set(seen))
            assert len(ids) == len(set(ids)) == 4 * 25 * 20
            assert reader.count() == 4 * 25 * 20
        finally:
            for s in (*writers, reader):
                s.close()

    def test_closed_store_refuses(self, redis_server: RedisServer) -> None:
        s = redis_store(redis_server)
        s.close()
        s.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            s.append([event("x")])

    @pytest.mark.parametrize("prefix", ["", "a{b}"])
    def test_bad_prefix(self, redis_server: RedisServer, prefix: str) -> None:
        from events.redis_store import RedisEventStore

        with pytest.raises(ValueError, match="prefix"):
            RedisEventStore(redis_server.url, prefix=prefix)

    def test_warns_when_redis_is_not_durable(
        self, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        import redis

        admin = redis.Redis(port=redis_server.port)
        admin.config_set("appendfsync", "everysec")
        try:
            with caplog.at_level(logging.WARNING, logger="productevents.store.redis"):
                redis_store(redis_server).close()
        finally:
            admin.config_set("appendfsync", "always")
            admin.close()
        assert "appendfsync always" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="productevents.store.redis"):
            redis_store(redis_server).close()
        assert caplog.text == ""

    def test_unreachable_redis_fails_at_open(self) -> None:
        pytest.importorskip("redis", reason="the redis package is not installed")

        with pytest.raises(EventStoreUnavailableError, match="Redis"):
            open_event_store(f"redis://127.0.0.1:{free_port()}/0")

    def test_erasures_logged_by_one_instance_are_read_by_another(
        self, redis_server: RedisServer
    ) -> None:
        prefix = f"test-{uuid.uuid4().hex}"
        a, b = redis_store(redis_server, prefix), redis_store(redis_server, prefix)
        other = redis_store(redis_server)
        try:
            a.append([event("1", user_id="al:ice", session_id="s")])
            assert a.forget_user("al:ice") == 1  # a colon in the id survives the entry format
            assert [(e.user_id, e.seq) for e in b.erasures_since(0)] == [("al:ice", 1)]
            assert other.erasures_since(0) == []  # another prefix, another log
        finally:
            for s in (a, b, other):
                s.close()

    def test_erasure_log_holds_only_the_user_id_and_time(self, store: EventStore) -> None:
        from events.redis_store import RedisEventStore

        assert isinstance(store, RedisEventStore)
        store.append([event("1", user_id="alice", session_id="secret-session", query="q")])
        store.forget_user("alice")
        entries: Any = store._redis.zrange(store._keys["erasures"], 0, -1)
        assert len(entries) == 1
        seq, ts, user = entries[0].decode().split(":", 2)
        assert (seq, user) == ("1", "alice")
        float(ts)
        assert b"secret-session" not in entries[0]

    def test_stopped_redis_is_unavailable_then_recovers(self, tmp_path: Path) -> None:
        from events.redis_store import RedisEventStore

        server = RedisServer(tmp_path / "redis")
        server.start()
        try:
            store = RedisEventStore(f"{server.url}?prefix=down", retries=1)
            store.append([event("before", user_id="alice")])
            server.kill(signal.SIGTERM)
            for call in (
                lambda: store.append([event("while-down")]),
                lambda: store.forget_user("alice"),
                lambda: store.erasures_since(0),
                lambda: store.read_since(0),
            ):
                with pytest.raises(EventStoreUnavailableError, match="Redis"):
                    call()
            server.start()  # same port and files
            assert store.append([event("after")]) == [True]
            assert [e.event_id for e in store.scan()] == ["before", "after"]
            assert store.erasures_since(0) == []  # the failed erasure was never logged
            store.close()
        finally:
            server.kill()


# --------------------------------------------------------------------------------------------
# Durability: Redis killed (SIGKILL) mid-ingest and restarted from its append-only file

_INGESTER = """
import sys
from events.factory import open_event_store
from events.store import ingest
store = open_event_store(sys.argv[1])
batch_no = 0
while True:
    batch = [
        {"type": "click", "session_id": "s", "product_id": "P", "event_id": f"{batch_no}-{i}"}
        for i in range(50)
    ]
    try:
        outcome = ingest(store, batch)
    except Exception:
        sys.exit(0)  # Redis is gone: this batch was never acknowledged
    assert len(outcome.accepted) == 50
    # Acknowledge only after ingest returned, as the HTTP route answers 2xx.
    sys.stdout.write(" ".join(f"{batch_no}-{i}" for i in range(50)) + "\\n")
    sys.stdout.flush()
    batch_no += 1
"""


def test_no_acknowledged_event_is_lost_when_redis_is_killed(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    url = f"{server.url}?prefix=crash"
    proc = subprocess.Popen(
        [sys.executable, "-c", _INGESTER, url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while len(acknowledged) < 5000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.extend(line.split())
        server.kill()  # a crash of Redis while the ingester is mid-batch
        rest, err = proc.communicate(timeout=60)
        acknowledged.extend(rest.split())
        assert len(acknowledged) >= 5000, err
        server.start()  # replays the append-only file
        store = open_event_store(url)
        try:
            stored = {e.event_id for e in store.scan()}
            last = store.last_seq()
            # The counter came back too: new events are numbered after the old ones.
            store.append([event("after-restart")])
            assert store.read_since(last)[0].event.event_id == "after-restart"
        finally:
            store.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.kill()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
