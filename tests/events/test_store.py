"""Events: validation, the SQLite and PostgreSQL stores (one contract), idempotent ingestion,
erasure and its log, retention, a store that cannot be reached, analytics, and durability of
acknowledged events under SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from events.analytics import query_stats, summarise, top_queries, zero_result_queries
from events.factory import open_event_store
from events.store import (
    Erasure,
    Event,
    EventStore,
    EventType,
    SQLiteEventStore,
    event_to_dict,
    experiment_counts,
    ingest,
    parse_event,
    unit_key,
)
from merchandising.experiments import VariantCounts, tally
from search.analysis import normalise_query
from search.errors import EventStoreUnavailableError, InvalidEventError

NOW = 1_750_000_000.0
REPO = Path(__file__).resolve().parents[2]


def raw(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "click", "session_id": "s1", "product_id": "P1"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def event(event_id: str, **fields: Any) -> Event:
    data = raw(**fields)
    data.setdefault("timestamp", NOW)
    return parse_event(data, now=NOW + 10, default_event_id=event_id)


def fields_of(exc: pytest.ExceptionInfo[InvalidEventError]) -> set[str]:
    return {e.field for e in exc.value.errors}


class TestParseEvent:
    @pytest.mark.parametrize("kind", list(EventType))
    def test_every_type_with_its_required_fields(self, kind: EventType) -> None:
        data = raw(type=kind.value, query="oak chair")
        if kind is EventType.SEARCH:
            data.pop("product_id")
            data["results"] = ["P1", "P2"]
        parsed = parse_event(data, now=NOW)
        assert parsed.type is kind
        assert parsed.timestamp == NOW
        assert parsed.event_id  # a random id when none is given

    def test_all_fields_round_trip(self) -> None:
        data = {
            "event_id": "e-1",
            "type": "search",
            "user_id": "u1",
            "session_id": "s1",
            "query": "Oak  Chair",
            "results": ["A", "B"],
            "channel": "APP",
            "timestamp": NOW - 5,
            "variants": {"ranking-2": "control", "ranking-1": "b"},
        }
        parsed = parse_event(data, now=NOW)
        assert parsed.channel == "app"
        assert parsed.variants == {"ranking-1": "b", "ranking-2": "control"}
        assert parsed.normalised_query == "oak chair"
        assert parse_event(event_to_dict(parsed), now=NOW) == parsed

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            (raw(type="bogus"), "type"),
            ({"session_id": "s1"}, "type"),
            (raw(session_id=None), "session_id"),
            (raw(session_id="  "), "session_id"),
            (raw(product_id=None), "product_id"),
            ({"type": "search", "session_id": "s"}, "query"),
            (raw(position=0), "position"),
            (raw(position="3"), "position"),
            (raw(position=True), "position"),
            (raw(results=["a"]), "results"),
            ({"type": "search", "session_id": "s", "query": "q", "results": [1]}, "results"),
            (raw(timestamp=NOW + 3600), "timestamp"),
            (raw(timestamp="yesterday"), "timestamp"),
            (raw(timestamp="2025-01-01T10:00:00"), "timestamp"),
            (raw(timestamp=-1), "timestamp"),
            (raw(user_id=5), "user_id"),
            (raw(user_id="x" * 201), "user_id"),
            (raw(colour="red"), "colour"),
            (raw(variants="b"), "variants"),
            (raw(variants=["e1", "b"]), "variants"),
            (raw(variants={"e1": 3}), "variants.e1"),
            (raw(variants={"e1": ""}), "variants.e1"),
            (raw(variants={"e1": "b\n"}), "variants.e1"),
            (raw(variants={"e 1": "b"}), "variants"),
            (raw(variants={f"e{i}": "b" for i in range(21)}), "variants"),
        ],
    )
    def test_each_bad_field_is_named(self, data: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidEventError) as exc:
            parse_event(data, now=NOW)
        assert field in fields_of(exc)

    def test_every_problem_is_listed_at_once(self) -> None:
        with pytest.raises(InvalidEventError) as exc:
            parse_event({"type": "nope", "position": -1}, now=NOW)
        assert {"type", "session_id", "position"} <= fields_of(exc)

    @pytest.mark.parametrize("value", [None, [], "event", 3])
    def test_non_objects_are_rejected(self, value: Any) -> None:
        with pytest.raises(InvalidEventError) as exc:
            parse_event(value, now=NOW)
        assert fields_of(exc) == {"*"}

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (NOW - 60, NOW - 60),
            ((NOW - 60) * 1000, NOW - 60),
            ("2025-06-15T12:00:00Z", 1_749_988_800.0),
            ("2025-06-15T14:00:00+02:00", 1_749_988_800.0),
        ],
    )
    def test_timestamps_in_seconds_milliseconds_or_iso(self, value: Any, expected: float) -> None:
        assert parse_event(raw(timestamp=value), now=NOW).timestamp == pytest.approx(expected)

    def test_empty_variants_mean_none(self) -> None:
        assert parse_event(raw(variants={}), now=NOW).variants is None
        assert parse_event(raw(), now=NOW).variants is None
        assert event_to_dict(parse_event(raw(), now=NOW))["variants"] is None

    def test_normalise_query(self) -> None:
        assert normalise_query("  Żółte   KRZESŁO ") == "zolte krzeslo"


# --------------------------------------------------------------------------------------------
# Stores: one contract, two implementations


def _postgres_binaries() -> tuple[str, str] | None:
    folders: list[str | Path] = [
        os.environ.get("PG_BIN", ""),
        *sorted(Path("/usr/lib/postgresql").glob("*/bin")),
    ]
    for folder in folders:
        if folder and (Path(folder) / "initdb").exists():
            return str(Path(folder) / "initdb"), str(Path(folder) / "pg_ctl")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return (initdb, pg_ctl) if initdb and pg_ctl else None


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server in a temporary folder, on a Unix socket, for this session."""
    pytest.importorskip(
        "psycopg", reason="psycopg is not installed (pip install 'productsearch[postgres]')"
    )
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        )
    initdb, pg_ctl = binaries
    root = Path(tempfile.mkdtemp(prefix="pg-events-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL")
        user = "postgres"
        try:
            shutil.chown(root, user=user)
        except (LookupError, OSError):
            pytest.skip("running as root without a 'postgres' system user to start PostgreSQL")
        root.chmod(0o700)
        prefix = [runuser, "-u", user, "--"]
    data = root / "data"
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *prefix,
                pg_ctl,
                "-D",
                str(data),
                "-o",
                f"-k {root} -c listen_addresses='' -c fsync=off",
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc}")
    try:
        yield f"postgresql://postgres@/postgres?host={root}"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        s: EventStore = SQLiteEventStore(tmp_path / "events.sqlite3")
    else:
        from events.store import PostgresEventStore

        dsn = request.getfixturevalue("postgres_dsn")
        table = f"events_{os.getpid()}_{time.monotonic_ns()}"
        s = PostgresEventStore(dsn, table=table)
    try:
        yield s
    finally:
        s.close()


class TestEventStoreContract:
    def test_append_then_read_in_order(self, store: EventStore) -> None:
        events = [event(f"e{i}", position=i + 1) for i in range(5)]
        assert store.append(events) == [True] * 5
        stored = store.read_since(0)
        assert [s.event for s in stored] == events
        assert [s.seq for s in stored] == sorted(s.seq for s in stored)
        assert store.last_seq() == stored[-1].seq
        assert store.count() == 5

    def test_read_since_is_incremental(self, store: EventStore) -> None:
        store.append([event("a"), event("b")])
        first = store.read_since(0)
        store.append([event("c")])
        newer = store.read_since(first[-1].seq)
        assert [s.event.event_id for s in newer] == ["c"]
        assert [s.event.event_id for s in store.read_since(0, limit=2)] == ["a", "b"]

    def test_duplicates_are_stored_once(self, store: EventStore) -> None:
        assert store.append([event("a"), event("b")]) == [True, True]
        assert store.append([event("b"), event("c")]) == [False, True]
        assert store.append([event("d"), event("a"), event("d")]) == [True, False, False]
        assert store.count() == 4

    def test_search_results_and_empty_results_survive(self, store: EventStore) -> None:
        with_results = parse_event(
            {"type": "search", "session_id": "s", "query": "q", "results": ["A", "B"]}, now=NOW
        )
        empty = parse_event(
            {"type": "search", "session_id": "s", "query": "q", "results": []}, now=NOW
        )
        unknown = parse_event({"type": "search", "session_id": "s", "query": "q"}, now=NOW)
        store.append([with_results, empty, unknown])
        got = [s.event.results for s in store.read_since(0)]
        assert got == [("A", "B"), (), None]

    def test_scan_by_time_and_type(self, store: EventStore) -> None:
        store.append(
            [
                event("old", timestamp=NOW - 100),
                event("mid", timestamp=NOW - 50, type="view"),
                event("new", timestamp=NOW),
            ]
        )
        assert [e.event_id for e in store.scan(NOW - 60)] == ["mid", "new"]
        assert [e.event_id for e in store.scan(None, NOW - 10)] == ["old", "mid"]
        assert [e.event_id for e in store.scan(types=[EventType.VIEW])] == ["mid"]
        assert [e.event_id for e in store.scan()] == ["old", "mid", "new"]

    def test_forget_user_removes_their_sessions_too(self, store: EventStore) -> None:
        store.append(
            [
                event("1", user_id="alice", session_id="s-a"),
                # The same session before signing in: no user id, still hers.
                event("2", session_id="s-a"),
                event("3", user_id="bob", session_id="s-b"),
                event("4", session_id="anon"),
            ]
        )
        assert store.forget_user("alice") == 2
        assert [e.event_id for e in store.scan()] == ["3", "4"]
        assert store.forget_user("alice") == 0

    def test_forget_user_logs_the_erasure(self, store: EventStore) -> None:
        assert store.erasures_since(0) == []
        store.append([event("1", user_id="alice", session_id="s-a"), event("2", user_id="bob")])
        before = time.time()
        assert store.forget_user("alice") == 1
        # An unknown user is logged too: replicas may hold a profile whose events are gone.
        assert store.forget_user("nobody") == 0
        log = store.erasures_since(0)
        assert [e.user_id for e in log] == ["alice", "nobody"]
        assert all(isinstance(e, Erasure) for e in log)
        assert log[0].seq < log[1].seq
        assert before - 1 <= log[0].timestamp <= log[1].timestamp <= time.time() + 1
        assert store.erasures_since(log[0].seq) == [log[1]]
        assert store.erasures_since(log[1].seq) == []
        assert store.erasures_since(0, limit=1) == [log[0]]
        # The log is numbered apart from the events: appending does not move it.
        store.append([event("3")])
        assert store.erasures_since(log[1].seq) == []

    def test_erasures_are_purged_by_age(self, store: EventStore) -> None:
        store.forget_user("alice")
        store.forget_user("bob")
        assert store.purge_erasures_before(0.0) == 0
        assert len(store.erasures_since(0)) == 2
        assert store.purge_erasures_before(time.time() + 10) == 2
        assert store.erasures_since(0) == []
        store.forget_user("carol")  # numbering goes on after a purge
        assert [e.user_id for e in store.erasures_since(0)] == ["carol"]

    def test_closed_store_is_unavailable(self, store: EventStore) -> None:
        store.close()
        with pytest.raises(EventStoreUnavailableError, match="closed"):
            store.append([event("a")])
        with pytest.raises(EventStoreUnavailableError, match="closed"):
            store.forget_user("alice")
        with pytest.raises(EventStoreUnavailableError, match="closed"):
            store.erasures_since(0)

    def test_purge_before(self, store: EventStore) -> None:
        store.append([event("old", timestamp=NOW - 100), event("new", timestamp=NOW)])
        assert store.purge_before(NOW - 10) == 1
        assert [e.event_id for e in store.scan()] == ["new"]

    def test_empty_batch(self, store: EventStore) -> None:
        assert store.append([]) == []
        assert store.last_seq() == 0

    def test_variants_survive(self, store: EventStore) -> None:
        tagged = event("a", variants={"e1": "b", "e2": "control"})
        store.append([tagged, event("b")])
        assert [s.event.variants for s in store.read_since(0)] == [
            {"e1": "b", "e2": "control"},
            None,
        ]
        assert [e for e in store.scan()] == [tagged, event("b")]

    @pytest.mark.parametrize("unit", ["user", "session"])
    def test_experiment_counts_in_sql_match_the_reference(
        self, store: EventStore, unit: Any
    ) -> None:
        events = variant_events()
        store.append(events)
        counted = experiment_counts(store, "e1", unit)
        assert counted == reference_counts(events, "e1", unit)
        assert set(counted) == {"control", "b"}
        # The scan fallback (stores without SQL) agrees.
        assert experiment_counts(scan_only(store), "e1", unit) == counted
        assert experiment_counts(store, "e2", unit) == {"x": VariantCounts(1, 1, 0)}
        assert experiment_counts(store, "missing", unit) == {}

    def test_experiment_counts_by_time(self, store: EventStore) -> None:
        store.append(variant_events())
        recent = experiment_counts(store, "e1", "session", start=NOW - 50)
        assert recent == experiment_counts(scan_only(store), "e1", "session", start=NOW - 50)
        assert sum(c.units for c in recent.values()) < sum(
            c.units for c in experiment_counts(store, "e1", "session").values()
        )
        assert experiment_counts(store, "e1", "session", end=NOW - 1000) == {}

    def test_experiment_counts_check_arguments(self, store: EventStore) -> None:
        with pytest.raises(ValueError, match="experiment id"):
            experiment_counts(store, 'e"1', "user")
        with pytest.raises(ValueError, match="unit"):
            experiment_counts(store, "e1", "visitor")  # type: ignore[arg-type]


def variant_events() -> list[Event]:
    """Events of experiment e1 (and one of e2): several sessions per user, repeated clicks,
    anonymous sessions, events without variants, a purchase in a variant."""
    out: list[Event] = []
    for i in range(12):
        arm = "b" if i % 3 == 0 else "control"
        user = f"u{i % 4}" if i % 2 == 0 else None
        tag = {"e1": arm}
        common: dict[str, Any] = {"session_id": f"s{i}", "user_id": user, "variants": tag}
        ts = NOW - 100 + i * 5
        out.append(
            event(f"q{i}", type="search", query="sofa", product_id=None, timestamp=ts, **common)
        )
        if i % 2 == 0:
            out.append(event(f"c{i}", type="click", timestamp=ts, **common))
            out.append(event(f"cc{i}", type="click", timestamp=ts, **common))
        if i % 4 == 0:
            out.append(event(f"p{i}", type="purchase", timestamp=ts, **common))
        out.append(event(f"v{i}", type="add_to_cart", session_id=f"s{i}", timestamp=ts))
    out.append(event("other", session_id="s0", variants={"e2": "x"}, timestamp=NOW))
    return out


def reference_counts(events: list[Event], experiment: str, unit: Any) -> dict[str, VariantCounts]:
    return tally(
        (e.variants[experiment], unit_key(e, unit), e.type.value)
        for e in events
        if e.variants and experiment in e.variants
    )


class ScanOnly:
    """A store without SQL counting (as the Redis store): counted by scanning."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def scan(self, *args: Any, **kw: Any) -> Any:
        return self._store.scan(*args, **kw)


def scan_only(store: EventStore) -> EventStore:
    """``store`` seen through :class:`ScanOnly` (only ``scan`` is used by the counting)."""
    return cast(EventStore, ScanOnly(store))


class TestSQLiteEventStore:
    def test_wal_mode_and_synchronous_level(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db", synchronous="NORMAL")
        conn = store._reader()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        store.close()

    def test_survives_reopening(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "sub" / "e.db")
        store.append([event("a")])
        store.close()
        again = open_event_store(f"sqlite:///{tmp_path / 'sub' / 'e.db'}")
        assert [e.event_id for e in again.scan()] == ["a"]
        again.close()

    def test_memory_store(self) -> None:
        store = SQLiteEventStore(":memory:")
        store.append([event("a")])
        assert store.count() == 1
        store.close()

    def test_rejects_an_unknown_synchronous_level(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="NORMAL or FULL"):
            SQLiteEventStore(tmp_path / "e.db", synchronous="OFF")  # type: ignore[arg-type]

    def test_closed_store_refuses_writes(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        store.close()
        with pytest.raises(EventStoreUnavailableError, match="closed"):
            store.append([event("a")])
        with pytest.raises(RuntimeError):  # as before the error had a name of its own
            store.count()

    def test_two_stores_on_one_file_share_the_erasure_log(self, tmp_path: Path) -> None:
        a, b = SQLiteEventStore(tmp_path / "e.db"), SQLiteEventStore(tmp_path / "e.db")
        try:
            a.append([event("1", user_id="alice")])
            assert a.forget_user("alice") == 1
            assert [e.user_id for e in b.erasures_since(0)] == ["alice"]
        finally:
            a.close()
            b.close()

    def test_locked_beyond_its_timeout_is_unavailable(self, tmp_path: Path) -> None:
        import sqlite3

        store = SQLiteEventStore(tmp_path / "e.db", timeout_s=0.2)
        other = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
        try:
            store.append([event("before")])
            other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            started = time.monotonic()
            with pytest.raises(EventStoreUnavailableError, match="locked"):
                store.append([event("while-locked")])
            assert time.monotonic() - started < 5
            with pytest.raises(EventStoreUnavailableError, match="locked"):
                store.forget_user("alice")
            assert store.count() == 1  # WAL readers are not blocked; nothing was stored
            other.execute("ROLLBACK")
            assert store.append([event("after")]) == [True]
            assert [e.event_id for e in store.scan()] == ["before", "after"]
            assert store.erasures_since(0) == []  # the failed erasure was not logged
        finally:
            other.close()
            store.close()

    def test_sql_mistakes_are_not_unavailability(self, tmp_path: Path) -> None:
        import sqlite3

        store = SQLiteEventStore(tmp_path / "e.db")
        try:
            with pytest.raises(sqlite3.OperationalError):
                store._query("SELECT nonsense FROM nowhere")
        finally:
            store.close()

    def test_rejects_a_negative_timeout(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="timeout_s"):
            SQLiteEventStore(tmp_path / "e.db", timeout_s=-1)


OLD_SCHEMA = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    session_id TEXT NOT NULL,
    ts REAL NOT NULL,
    user_id TEXT,
    product_id TEXT,
    query TEXT,
    norm_query TEXT,
    position INTEGER,
    channel TEXT,
    results TEXT
)
"""
"""The events table as versions before A/B test variants wrote it."""


class TestMigration:
    def test_sqlite_database_without_variants_gets_the_column(self, tmp_path: Path) -> None:
        import sqlite3

        path = tmp_path / "old.sqlite3"
        conn = sqlite3.connect(path)
        conn.execute(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO events (event_id, type, session_id, ts, product_id) "
            "VALUES ('old', 'click', 's1', ?, 'P1')",
            (NOW,),
        )
        conn.commit()
        conn.close()
        store = SQLiteEventStore(path)
        try:
            assert [(e.event_id, e.variants) for e in store.scan()] == [("old", None)]
            store.append([event("new", variants={"e1": "b"})])
            assert [e.variants for e in store.scan()] == [None, {"e1": "b"}]
            assert experiment_counts(store, "e1") == {"b": VariantCounts(1, 1, 0)}
        finally:
            store.close()
        # Opening it again (already migrated) changes nothing.
        again = SQLiteEventStore(path)
        assert [e.event_id for e in again.scan()] == ["old", "new"]
        # The erasure log did not exist either: created on open.
        assert again.erasures_since(0) == []
        again.forget_user("alice")
        assert [e.user_id for e in again.erasures_since(0)] == ["alice"]
        again.close()

    def test_postgres_table_without_variants_gets_the_column(self, postgres_dsn: str) -> None:
        import psycopg

        from events.store import PostgresEventStore

        table = f"old_{os.getpid()}_{time.monotonic_ns()}"
        pg_schema = OLD_SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        pg_schema = pg_schema.replace("REAL", "DOUBLE PRECISION")
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(pg_schema.replace("CREATE TABLE events", f"CREATE TABLE {table}"))
            conn.execute(
                f"INSERT INTO {table} (event_id, type, session_id, ts, product_id) "
                "VALUES ('old', 'click', 's1', %s, 'P1')",
                (NOW,),
            )
        store = PostgresEventStore(postgres_dsn, table=table)
        try:
            assert [(e.event_id, e.variants) for e in store.scan()] == [("old", None)]
            store.append([event("new", variants={"e1": "b"})])
            assert [e.variants for e in store.scan()] == [None, {"e1": "b"}]
            assert experiment_counts(store, "e1") == {"b": VariantCounts(1, 1, 0)}
            # The erasure log did not exist either: created on open.
            assert store.erasures_since(0) == []
            store.forget_user("alice")
            assert [e.user_id for e in store.erasures_since(0)] == ["alice"]
        finally:
            store.close()

    def test_postgres_connection_lost_is_unavailable_then_reconnects(
        self, postgres_dsn: str
    ) -> None:
        import psycopg

        from events.store import PostgresEventStore

        table = f"lost_{os.getpid()}_{time.monotonic_ns()}"
        store = PostgresEventStore(postgres_dsn, table=table)
        try:
            store.append([event("before")])
            pid = store._conn.info.backend_pid
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(EventStoreUnavailableError, match="PostgreSQL"):
                store.append([event("lost")])  # the server went away under this connection
            assert store.append([event("after")]) == [True]  # a new connection
            assert [e.event_id for e in store.scan()] == ["before", "after"]
        finally:
            store.close()

    def test_postgres_unreachable_at_open(self, postgres_dsn: str, tmp_path: Path) -> None:
        from events.store import PostgresEventStore

        with pytest.raises(EventStoreUnavailableError, match="PostgreSQL"):
            PostgresEventStore(f"postgresql://postgres@/postgres?host={tmp_path}")


class TestIngest:
    def test_good_events_kept_bad_ones_reported(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        outcome = ingest(store, [raw(), raw(type="bogus"), raw(position=0), raw()], now=NOW)
        assert outcome.accepted == (0, 3)
        assert set(outcome.rejected) == {1, 2}
        assert outcome.rejected[1][0].field == "type"
        assert store.count() == 2

    def test_idempotency_key_makes_a_retry_harmless(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        batch = [raw(), raw(type="view"), raw(type="bogus")]
        first = ingest(store, batch, idempotency_key="batch-1", now=NOW)
        retry = ingest(store, batch, idempotency_key="batch-1", now=NOW)
        assert first.accepted == (0, 1)
        assert retry.accepted == ()
        assert retry.duplicates == (0, 1)
        assert retry.event_ids == {0: "batch-1:0", 1: "batch-1:1"}
        assert store.count() == 2

    def test_without_a_key_each_post_counts(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        ingest(store, [raw()], now=NOW)
        ingest(store, [raw()], now=NOW)
        assert store.count() == 2


class TestAnalytics:
    @pytest.fixture
    def filled(self, tmp_path: Path) -> SQLiteEventStore:
        store = SQLiteEventStore(tmp_path / "e.db")
        rows: list[dict[str, Any]] = []
        # "oak chair": 4 sessions, 2 click (one twice), 1 buys; one search found nothing.
        for s in range(4):
            rows.append(
                {"type": "search", "session_id": f"s{s}", "query": "Oak chair", "results": ["A"]}
            )
        rows.append({"type": "search", "session_id": "s0", "query": "oak  chair", "results": []})
        rows += [
            {"type": "click", "session_id": "s0", "product_id": "A", "query": "oak chair"},
            {"type": "click", "session_id": "s0", "product_id": "A", "query": "oak chair"},
            {"type": "click", "session_id": "s1", "product_id": "A", "query": "oak chair"},
            {"type": "add_to_cart", "session_id": "s1", "product_id": "A", "query": "oak chair"},
            {"type": "purchase", "session_id": "s1", "product_id": "A", "query": "oak chair"},
            {"type": "view", "session_id": "s1", "product_id": "A"},
        ]
        for s in range(3):
            rows.append({"type": "search", "session_id": f"z{s}", "query": "zzz", "results": []})
        rows.append(
            {"type": "search", "session_id": "old", "query": "ancient", "timestamp": NOW - 86400}
        )
        for i, row in enumerate(rows):
            row.setdefault("timestamp", NOW - 100 + i)
        ingest(store, rows, now=NOW)
        return store

    def test_top_queries_with_rates(self, filled: SQLiteEventStore) -> None:
        top = top_queries(filled, NOW - 3600, NOW + 1)
        assert [s.query for s in top] == ["oak chair", "zzz"]
        oak = top[0]
        assert (oak.searches, oak.search_sessions, oak.zero_result_searches) == (5, 4, 1)
        assert (oak.clicks, oak.add_to_carts, oak.purchases) == (3, 1, 1)
        assert oak.click_through_rate == pytest.approx(0.5)
        assert oak.add_to_cart_rate == pytest.approx(0.25)
        assert oak.conversion_rate == pytest.approx(0.25)
        assert oak.zero_result_rate == pytest.approx(0.2)

    def test_zero_result_queries(self, filled: SQLiteEventStore) -> None:
        zero = zero_result_queries(filled)
        assert [(s.query, s.zero_result_searches) for s in zero] == [("zzz", 3), ("oak chair", 1)]

    def test_time_range_limits_the_events(self, filled: SQLiteEventStore) -> None:
        assert [s.query for s in top_queries(filled)] == ["oak chair", "zzz", "ancient"]
        assert [s.query for s in top_queries(filled, None, NOW - 3600)] == ["ancient"]
        assert top_queries(filled, NOW + 10, NOW + 20) == []

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"order": "nope"}, "unknown order"),
            ({"limit": 0}, "limit"),
            ({"start": 10.0, "end": 5.0}, "start"),
        ],
    )
    def test_bad_arguments(
        self, filled: SQLiteEventStore, kwargs: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            query_stats(filled, **kwargs)

    def test_summarise_nothing(self) -> None:
        assert summarise([]) == {}


# --------------------------------------------------------------------------------------------
# Durability: kill the ingesting process with SIGKILL mid-stream

_INGESTER = """
import sys, time
from events.store import SQLiteEventStore, ingest
store = SQLiteEventStore(sys.argv[1], synchronous=sys.argv[2])
batch_no = 0
while True:
    batch = [
        {"type": "click", "session_id": "s", "product_id": "P", "event_id": f"{batch_no}-{i}"}
        for i in range(50)
    ]
    outcome = ingest(store, batch)
    assert len(outcome.accepted) == 50
    # Acknowledge only after ingest returned, as the HTTP route answers 2xx.
    sys.stdout.write(" ".join(f"{batch_no}-{i}" for i in range(50)) + "\\n")
    sys.stdout.flush()
    batch_no += 1
"""


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_no_acknowledged_event_is_lost_on_sigkill(tmp_path: Path, synchronous: str) -> None:
    db = tmp_path / "events.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", _INGESTER, str(db), synchronous],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(acknowledged) < 3000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.extend(line.split())
    # Killed mid-ingest: the process is inside its loop, likely inside a transaction.
    os.kill(proc.pid, signal.SIGKILL)
    rest, err = proc.communicate(timeout=30)
    acknowledged.extend(rest.split())
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 3000, err
    store = SQLiteEventStore(db)
    stored = {e.event_id for e in store.scan()}
    store.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
