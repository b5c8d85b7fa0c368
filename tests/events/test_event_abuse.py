"""Forged and accidental events (issue 15 §4) at the core: per-shopper caps and distinct-shopper
minimums in the behavioural signals, server-recorded answers (``query_id``) and attribution,
and events with a user but no session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from events.analytics import query_stats
from events.factory import open_event_store
from events.impressions import ImpressionRecorder
from events.signals import (
    BehaviourAggregator,
    BehaviourConfig,
    RecentKeys,
    SignalsRefresher,
)
from events.store import (
    Event,
    EventStore,
    EventType,
    SQLiteEventStore,
    ingest,
    parse_event,
    served_event_id,
)
from search.errors import EventStoreUnavailableError, InvalidEventError

NOW = 1_750_000_000.0


def aggregate(events: list[dict[str, Any]], tmp_path: Path, **config: Any) -> BehaviourAggregator:
    store = SQLiteEventStore(tmp_path / f"{uuid.uuid4().hex}.db")
    outcome = ingest(store, events, now=NOW + 1)
    assert not outcome.rejected, outcome.rejected
    aggregator = BehaviourAggregator(BehaviourConfig(**config))
    SignalsRefresher(store, [aggregator], clock=lambda: NOW).refresh()
    return aggregator


def shown(query: str, results: Sequence[str], **who: str) -> dict[str, Any]:
    return {**who, "type": "search", "query": query, "results": list(results), "timestamp": NOW}


def chose(kind: str, query: str, product: str, position: int | None = None, **who: str) -> Any:
    event = {**who, "type": kind, "query": query, "product_id": product, "timestamp": NOW}
    return event if position is None else {**event, "position": position}


SHOWN = [f"P{i}" for i in range(1, 31)]


class TestPerShopperCaps:
    def test_one_shopper_counts_once_per_product_and_kind(self, tmp_path: Path) -> None:
        events = [shown("sofa", SHOWN, session_id="a") for _ in range(50)]
        events += [chose("click", "sofa", "P30", 30, session_id="a") for _ in range(100)]
        events += [chose("purchase", "sofa", "P30", session_id="a") for _ in range(100)]
        signals = aggregate(events, tmp_path).snapshot.queries["sofa"]
        p30 = signals.products["P30"]
        assert (p30.impressions, p30.clicks, p30.purchases) == (1.0, 1.0, 1.0)
        assert (p30.shoppers, p30.viewers) == (1, 1)
        assert signals.products["P1"].impressions == 1.0
        assert signals.searches == 0.0  # one shopper: not (yet) a popular query
        assert signals.shoppers == 1

    def test_a_user_across_many_sessions_is_one_shopper(self, tmp_path: Path) -> None:
        events = [
            chose("click", "sofa", "P30", 1, user_id="u", session_id=f"s{i}") for i in range(60)
        ]
        p30 = aggregate(events, tmp_path).snapshot.queries["sofa"].products["P30"]
        assert (p30.clicks, p30.shoppers) == (1.0, 1)

    def test_a_shopper_counts_for_few_products_per_query(self, tmp_path: Path) -> None:
        events = [chose("click", "sofa", p, i + 1, session_id="a") for i, p in enumerate(SHOWN)]
        products = aggregate(events, tmp_path, max_choices_per_query=5).snapshot.queries["sofa"]
        assert sum(s.clicks for s in products.products.values()) == 5.0

    def test_lifting_needs_min_shoppers(self, tmp_path: Path) -> None:
        def lift(shoppers: int) -> float:
            events: list[dict[str, Any]] = []
            for s in range(shoppers):
                events += [
                    shown("sofa", SHOWN, session_id=f"s{s}"),
                    chose("click", "sofa", "P20", 20, session_id=f"s{s}"),
                ]
            snapshot = aggregate(events, tmp_path, min_shoppers=3).snapshot
            signals = snapshot.queries["sofa"]
            return snapshot.credible_lift(signals, signals.products["P20"])

        assert lift(2) == 0.0
        assert lift(3) > 0.0

    def test_skips_demote_only_with_enough_distinct_viewers(self, tmp_path: Path) -> None:
        def lift_of_top(viewers: int) -> float:
            events: list[dict[str, Any]] = []
            for s in range(viewers):
                events.append(shown("sofa", SHOWN, session_id=f"s{s}"))
                if s % 2 == 0:  # half of them choose P2: P1 is skipped by all
                    events.append(chose("click", "sofa", "P2", 2, session_id=f"s{s}"))
            snapshot = aggregate(events, tmp_path, demote_min_shoppers=10).snapshot
            signals = snapshot.queries["sofa"]
            return snapshot.credible_lift(signals, signals.products["P1"])

        assert lift_of_top(9) == 0.0
        assert lift_of_top(12) < 0.0

    def test_a_lone_view_makes_nothing_popular(self, tmp_path: Path) -> None:
        one = [chose("view", "sofa", "P1", session_id="a")]
        assert aggregate(one, tmp_path).snapshot.popularity == {}
        three = [chose("view", "sofa", "P1", session_id=s) for s in "abc"]
        assert aggregate(three, tmp_path).snapshot.popularity["P1"] > 0

    @pytest.mark.parametrize(("sessions", "searches"), [("aa", 0.0), ("ab", 0.0), ("abc", 3.0)])
    def test_a_query_is_popular_only_when_several_shoppers_search_it(
        self, tmp_path: Path, sessions: str, searches: float
    ) -> None:
        events = [shown("call 555 0100", [], session_id=s) for s in sessions]
        signals = aggregate(events, tmp_path).snapshot.queries["call 555 0100"]
        assert signals.searches == pytest.approx(searches)

    def test_caps_hold_hashes_for_a_window_of_event_time(self) -> None:
        keys = RecentKeys(window_s=100.0)
        keys.advance(0.0)
        assert keys.add(("chose", "u:u", 1)) and not keys.add(("chose", "u:u", 1))
        assert "u:u" not in repr(vars(keys))  # no shopper id kept, only hashes
        assert not keys.advance(99.0) and keys.advance(100.0)
        assert keys.count(("chose", "u:u", 1)) == 2  # still capped a window later
        keys.advance(200.0)
        assert keys.count(("chose", "u:u", 1)) == 0 and len(keys) == 0

    def test_config_is_checked(self) -> None:
        with pytest.raises(ValueError, match="min_shoppers"):
            BehaviourConfig(min_shoppers=0)
        with pytest.raises(ValueError, match="max_choices_per_query"):
            BehaviourConfig(max_choices_per_query=0)


class TestUserWithoutSession:
    def test_user_id_alone_is_enough(self) -> None:
        event = parse_event({"type": "view", "user_id": "u1", "product_id": "P1"}, now=NOW)
        assert (event.user_id, event.session_id) == ("u1", "user:u1")

    def test_neither_is_an_error_naming_session_id(self) -> None:
        with pytest.raises(InvalidEventError) as info:
            parse_event({"type": "view", "product_id": "P1"}, now=NOW)
        assert [e.field for e in info.value.errors] == ["session_id"]
        assert "user_id" in info.value.errors[0].message


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SQLiteEventStore]:
    events = SQLiteEventStore(tmp_path / "events.db")
    yield events
    events.close()


class TestAttribution:
    def test_a_click_takes_query_and_position_from_the_record(
        self, store: SQLiteEventStore
    ) -> None:
        recorder = ImpressionRecorder(store, clock=lambda: NOW)
        query_id = recorder.record("Sofa ", SHOWN, first_position=11, session_id="s1")
        assert query_id is not None
        click = {
            "type": "click",
            "session_id": "s1",
            "product_id": "P3",
            "query_id": query_id,
            "position": 1,  # the client's claim: ignored
            "query": "something else",
        }
        outcome = ingest(store, [click], served=recorder.lookup, now=NOW)
        assert outcome.accepted == (0,)
        stored = next(store.scan(types=[EventType.CLICK]))
        assert (stored.query, stored.position, stored.query_id) == ("Sofa", 13, query_id)

    def test_the_record_is_found_in_the_store_by_another_replica(
        self, store: SQLiteEventStore
    ) -> None:
        recorder = ImpressionRecorder(store, clock=lambda: NOW)
        query_id = recorder.record("sofa", SHOWN, user_id="u1")
        assert query_id is not None and recorder.flush() == 1
        click = {"type": "add_to_cart", "user_id": "u1", "product_id": "P2", "query_id": query_id}
        outcome = ingest(store, [click], now=NOW)  # no recorder: read from the store
        assert outcome.accepted == (0,)
        stored = next(store.scan(types=[EventType.ADD_TO_CART]))
        assert (stored.query, stored.position) == ("sofa", 2)

    @pytest.mark.parametrize(
        ("change", "field", "words"),
        [
            ({"query_id": "0" * 32}, "query_id", "unknown"),
            ({"session_id": "other"}, "query_id", "another shopper"),
            ({"product_id": "NOT-SHOWN"}, "product_id", "not among the results"),
            ({"event_id": "served:x"}, "event_id", "reserved"),
        ],
    )
    def test_bad_references_are_rejected_naming_the_field(
        self, store: SQLiteEventStore, change: dict[str, str], field: str, words: str
    ) -> None:
        recorder = ImpressionRecorder(store, clock=lambda: NOW)
        query_id = recorder.record("sofa", SHOWN, session_id="s1")
        click = {"type": "click", "session_id": "s1", "product_id": "P1", "query_id": query_id}
        outcome = ingest(store, [{**click, **change}], served=recorder.lookup, now=NOW)
        errors = outcome.rejected[0]
        assert errors[0].field == field and words in errors[0].message
        assert store.count() == 0

    def test_a_search_event_with_its_query_id_is_a_duplicate(self, store: SQLiteEventStore) -> None:
        recorder = ImpressionRecorder(store, clock=lambda: NOW)
        query_id = recorder.record("sofa", SHOWN, session_id="s1")
        assert query_id is not None
        search = {"type": "search", "session_id": "s1", "query": "sofa", "query_id": query_id}
        outcome = ingest(store, [search], served=recorder.lookup, now=NOW)
        assert outcome.duplicates == (0,) and outcome.event_ids[0] == served_event_id(query_id)
        recorder.flush()
        assert store.count() == 1  # the server's record only

    def test_an_anonymous_answer_binds_to_nobody(self, store: SQLiteEventStore) -> None:
        recorder = ImpressionRecorder(store, clock=lambda: NOW)
        query_id = recorder.record("sofa", SHOWN)
        click = {"type": "click", "session_id": "any", "product_id": "P1", "query_id": query_id}
        assert ingest(store, [click], served=recorder.lookup, now=NOW).accepted == (0,)


class _FlakyStore:
    """An event store whose writes fail until ``up`` is set."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.up = False

    def append(self, events: Sequence[Event]) -> list[bool]:
        if not self.up:
            raise EventStoreUnavailableError("down for the test")
        return self.inner.append(events)

    def get_event(self, event_id: str) -> Event | None:
        return self.inner.get_event(event_id)


class TestImpressionRecorder:
    def test_blank_queries_are_not_recorded(self, store: SQLiteEventStore) -> None:
        recorder = ImpressionRecorder(store)
        assert recorder.record("  ", SHOWN) is None
        assert recorder.pending == 0

    def test_records_wait_while_the_store_is_down(self, store: SQLiteEventStore) -> None:
        flaky = _FlakyStore(store)
        recorder = ImpressionRecorder(flaky, clock=lambda: NOW)  # type: ignore[arg-type]
        query_id = recorder.record("sofa", SHOWN, session_id="s")
        assert query_id is not None
        with pytest.raises(EventStoreUnavailableError):
            recorder.flush()
        assert recorder.pending == 1 and recorder.lookup(query_id) is not None
        flaky.up = True
        assert recorder.flush() == 1 and recorder.pending == 0
        stored = store.get_event(served_event_id(query_id))
        assert stored is not None and stored.results == tuple(SHOWN)

    def test_the_queue_is_bounded(self, store: SQLiteEventStore) -> None:
        recorder = ImpressionRecorder(store, max_pending=2)
        for _ in range(3):
            recorder.record("sofa", SHOWN)
        assert (recorder.pending, recorder.dropped) == (2, 1)

    def test_background_thread_writes_and_stop_flushes(self, store: SQLiteEventStore) -> None:
        recorder = ImpressionRecorder(store, flush_s=60)
        recorder.start()
        recorder.record("sofa", SHOWN)
        recorder.stop()
        assert store.count() == 1

    def test_arguments_are_checked(self, store: SQLiteEventStore) -> None:
        with pytest.raises(ValueError, match="flush_s"):
            ImpressionRecorder(store, flush_s=0)


class TestStoresKeepQueryIds:
    def test_an_old_sqlite_file_gets_the_column(self, tmp_path: Path) -> None:
        import sqlite3

        path = tmp_path / "old.db"
        conn = sqlite3.connect(path)
        conn.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL "
            "UNIQUE, type TEXT NOT NULL, session_id TEXT NOT NULL, ts REAL NOT NULL, user_id "
            "TEXT, product_id TEXT, query TEXT, norm_query TEXT, position INTEGER, channel TEXT, "
            "results TEXT)"
        )
        conn.execute(
            "INSERT INTO events (event_id, type, session_id, ts) VALUES ('e1', 'view', 's', 1.0)"
        )
        conn.commit()
        conn.close()
        store = SQLiteEventStore(path)
        old = store.get_event("e1")
        assert old is not None and old.query_id is None
        ingest(store, [{"type": "search", "session_id": "s", "query": "q", "query_id": None}])
        assert store.count() == 2
        store.close()

    def test_redis_round_trips_query_id_and_finds_records(self, tmp_path: Path) -> None:
        from tests.events.test_redis_store import RedisServer

        server = RedisServer(tmp_path / "redis")
        server.start()
        try:
            store = open_event_store(f"{server.url}?prefix=t{uuid.uuid4().hex[:8]}")
            recorder = ImpressionRecorder(store, clock=lambda: NOW)
            query_id = recorder.record("sofa", SHOWN, session_id="s1")
            assert query_id is not None
            recorder.flush()
            record = store.get_event(served_event_id(query_id))
            assert record is not None and record.query_id == query_id
            assert record.results == tuple(SHOWN)
            assert store.get_event("nothing") is None
            click = {"type": "click", "session_id": "s1", "product_id": "P5", "query_id": query_id}
            assert ingest(store, [click], now=NOW + 1).accepted == (0,)
            stored = [e for e in store.scan() if e.type is EventType.CLICK]
            assert (stored[0].position, stored[0].query_id) == (5, query_id)
            store.close()
        finally:
            server.kill()


class TestSearchAsYouType:
    def typed(self, store: SQLiteEventStore, word: str, session: str, start: float) -> None:
        clock = iter(start + i for i in range(len(word)))
        recorder = ImpressionRecorder(store, clock=lambda: next(clock))
        for end in range(1, len(word) + 1):
            recorder.record(word[:end], SHOWN[:3], session_id=session)
        recorder.flush()

    def test_keystrokes_are_not_searches_of_their_own(self, store: SQLiteEventStore) -> None:
        for session in ("a", "b", "c"):
            self.typed(store, "sofa", session, NOW)
        aggregator = BehaviourAggregator()
        SignalsRefresher(store, [aggregator], clock=lambda: NOW).refresh()
        queries = aggregator.snapshot.queries
        assert queries["sofa"].searches == pytest.approx(3.0, rel=1e-3)  # decayed a little
        assert [queries[q].searches for q in ("s", "so", "sof")] == [0.0, 0.0, 0.0]
        assert queries["sof"].products["P1"].impressions > 0  # shown all the same

        rows = {r.query: r.searches for r in query_stats(store)}
        assert rows == {"sofa": 3}

    def test_searches_apart_in_time_both_count(self, store: SQLiteEventStore) -> None:
        recorder = ImpressionRecorder(store, clock=lambda: NOW)
        recorder.record("sof", SHOWN, session_id="a")
        recorder.flush()
        later = ImpressionRecorder(store, clock=lambda: NOW + 60)
        later.record("sofa", SHOWN, session_id="a")
        later.flush()
        assert {r.query: r.searches for r in query_stats(store)} == {"sof": 1, "sofa": 1}
