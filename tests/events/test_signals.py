"""Behavioural signals: the click model, decayed popularity, smoothed rates, the background
refresh, and the one query key that signals and merchandising rules share."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from events.signals import (
    DAY_S,
    BehaviourAggregator,
    BehaviourConfig,
    SignalsRefresher,
    fit_position_based_model,
)
from events.store import Event, EventType, SQLiteEventStore, StoredEvent, ingest
from search.analysis import normalise_query
from search.rank.behaviour import BehaviourSnapshot
from search.rules import Boost, Rule, RuleSet, Selector
from tests.events.shoppers import NOW, folded, session


class TestPositionBasedModel:
    def test_recovers_bias_and_attractiveness(self) -> None:
        rng = np.random.default_rng(0)
        true_theta = np.array([1.0, 0.6, 0.35, 0.2])
        true_alpha = rng.uniform(0.05, 0.9, size=40)
        qd, pos, n, c = [], [], [], []
        for pair in range(40):
            for p in range(4):  # every pair shown at every position (rotated rankings)
                shown = 400
                qd.append(pair)
                pos.append(p)
                n.append(shown)
                c.append(rng.binomial(shown, true_theta[p] * true_alpha[pair]))
        theta, alpha, _ = fit_position_based_model(
            np.array(qd),
            np.array(pos),
            np.array(n, dtype=float),
            np.array(c, dtype=float),
            40,
            4,
            iterations=200,
            prior_strength=1.0,
            theta_strength=1.0,
        )
        relative = theta / theta[0]
        assert relative == pytest.approx(true_theta, abs=0.08)
        assert np.corrcoef(alpha, true_alpha)[0, 1] > 0.95

    def test_a_lower_click_rate_deep_down_can_mean_more_attractive(self) -> None:
        # Pair 0 at position 1 gets 30% clicks; pair 1 at position 4 gets 15%, while a
        # calibration pair seen at both positions shows position 4 is examined a third as often.
        qd = np.array([0, 1, 2, 2])
        pos = np.array([0, 3, 0, 3])
        n = np.array([1000.0, 1000.0, 1000.0, 1000.0])
        c = np.array([300.0, 150.0, 600.0, 200.0])
        theta, alpha, _ = fit_position_based_model(qd, pos, n, c, 3, 4, iterations=100)
        assert theta[3] < theta[0]
        assert alpha[1] > alpha[0]

    def test_no_data(self) -> None:
        empty = np.zeros(0, dtype=np.int64)
        theta, alpha, prior = fit_position_based_model(
            empty, empty, empty.astype(float), empty.astype(float), 0, 5
        )
        assert len(theta) == 5 and len(alpha) == 0 and 0 < prior < 1


class TestBehaviourAggregator:
    def test_rates_from_sessions(self, tmp_path: Path) -> None:
        events: list[dict[str, Any]] = []
        for i in range(20):
            clicks = {"B": 2} if i % 2 == 0 else {}
            events += session(
                "Oak Chair", ["A", "B", "C"], clicks, carts=("B",) * (i % 4 == 0), sid=f"s{i}"
            )
        snap = folded(events, tmp_path).snapshot
        signals = snap.queries["oak chair"]
        assert signals.searches == pytest.approx(20)
        b, a = signals.products["B"], signals.products["A"]
        assert b.impressions == pytest.approx(20)
        assert b.clicks == pytest.approx(10)
        assert b.carts == pytest.approx(5)
        assert b.click_rate > a.click_rate
        assert b.cart_rate > a.cart_rate
        assert b.utility > signals.prior_utility > a.utility
        assert snap.position_bias[0] == pytest.approx(1.0)
        assert snap.last_seq == 20 + 10 + 5  # searches, clicks, carts

    def test_cold_start_is_smoothed(self, tmp_path: Path) -> None:
        events: list[dict[str, Any]] = []
        for i in range(30):  # "A": 30 clicks in 100 impressions
            events += session("lamp", ["A"], {"A": 1}, sid=f"a{i}")
        for i in range(70):
            events += session("lamp", ["A"], sid=f"b{i}")
        events += session("lamp", ["X"], {"X": 1}, sid="x")  # "X": 1 click in 1 impression
        signals = folded(events, tmp_path).snapshot.queries["lamp"]
        assert signals.products["X"].click_rate < 0.9
        assert signals.products["X"].examinations < signals.products["A"].examinations

    def test_popularity_decays_with_age(self, tmp_path: Path) -> None:
        old = {
            "type": "purchase",
            "session_id": "s",
            "product_id": "OLD",
            "timestamp": NOW - 28 * DAY_S,
        }
        new = {"type": "purchase", "session_id": "s", "product_id": "NEW", "timestamp": NOW}
        # One shopper's purchases: popular with min_shoppers=1 (the decay is what is tested).
        snap = folded([old, new], tmp_path, half_life_days=14.0, min_shoppers=1).snapshot
        assert snap.popularity["OLD"] / snap.popularity["NEW"] == pytest.approx(0.25)
        assert snap.max_popularity == snap.popularity["NEW"]

    def test_events_without_query_feed_popularity_only(self, tmp_path: Path) -> None:
        snap = folded(
            [{"type": "view", "session_id": "s", "product_id": "A", "timestamp": NOW}],
            tmp_path,
            min_shoppers=1,
        ).snapshot
        assert snap.popularity["A"] > 0
        assert snap.queries == {}

    def test_a_published_snapshot_stays_as_it_was(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        aggregator = BehaviourAggregator(full_rebuild_every=3)
        refresher = SignalsRefresher(store, [aggregator], clock=lambda: NOW)
        ingest(store, session("sofa", ["A"], {"A": 1}) + session("lamp", ["B"]), now=NOW + 1)
        refresher.refresh()
        first = aggregator.snapshot
        ingest(
            store,
            session("lamp", ["B", "C"], {"B": 1}, sid="t") + session("chair", ["D"], sid="t"),
            now=NOW + 1,
        )
        refresher.refresh()
        # The snapshot searches were reading keeps its numbers and its queries...
        assert sorted(first.queries) == ["lamp", "sofa"] and "chair" not in first.queries
        assert list(first.queries["lamp"].products) == ["B"]
        assert first.queries["lamp"].products["B"].clicks == 0
        # ...and the new one has the new events.
        latest = aggregator.snapshot.queries
        assert sorted(latest) == ["chair", "lamp", "sofa"]
        assert latest["lamp"].products["B"].clicks == pytest.approx(1)
        assert sorted(latest["lamp"].products) == ["B", "C"]
        with pytest.raises(KeyError):
            latest["table"]
        with pytest.raises(ValueError, match="full_rebuild_every"):
            BehaviourAggregator(full_rebuild_every=0)

    def test_warm_started_fits_agree_with_a_full_fit(self, tmp_path: Path) -> None:
        rng = random.Random(3)
        batches = [
            [
                e
                for i in range(40)
                for e in session(
                    f"q{rng.randrange(5)}",
                    ["A", "B", "C", "D"],
                    {
                        p: k + 1
                        for k, p in enumerate("ABCD")
                        if rng.random() < {"A": 0.5, "B": 0.2}.get(p, 0.1)
                    },
                    sid=f"{b}-{i}",
                )
            ]
            for b in range(4)
        ]
        store = SQLiteEventStore(tmp_path / "e.db")
        warm = BehaviourAggregator(full_rebuild_every=100)  # one full fit, then warm ones
        refresher = SignalsRefresher(store, [warm], clock=lambda: NOW)
        for batch in batches:
            ingest(store, batch, now=NOW + 1)
            refresher.refresh()
        everything = [e for batch in batches for e in batch]
        (tmp_path / "full").mkdir()
        full = folded(everything, tmp_path / "full").snapshot
        (tmp_path / "converged").mkdir()
        converged = folded(everything, tmp_path / "converged", em_iterations=500).snapshot

        def error(snapshot: BehaviourSnapshot) -> float:
            return max(
                abs(snapshot.queries[q].products[p].click_rate - s.click_rate)
                for q in converged.queries
                for p, s in converged.queries[q].products.items()
            )

        # Warm rounds on top of earlier fits end at least as near the converged fit as one
        # full-length fit from scratch.
        assert error(warm.snapshot) <= error(full) + 0.005
        assert warm.snapshot.position_bias == pytest.approx(converged.position_bias, abs=0.05)

    def test_config_is_checked(self) -> None:
        with pytest.raises(ValueError, match="half_life"):
            BehaviourConfig(half_life_days=0)
        with pytest.raises(ValueError, match="max_position"):
            BehaviourConfig(max_position=0)


class TestSignalsRefresher:
    def test_folds_only_new_events_and_swaps_snapshots(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        aggregator = BehaviourAggregator()
        refresher = SignalsRefresher(store, [aggregator], clock=lambda: NOW)
        ingest(store, session("sofa", ["A", "B"], {"B": 2}), now=NOW + 1)
        assert refresher.refresh() == 2
        first = aggregator.snapshot
        assert refresher.refresh() == 0
        assert aggregator.snapshot is first  # nothing new: no rebuild
        ingest(store, session("sofa", ["A", "B"], {"B": 2}, sid="t"), now=NOW + 1)
        assert refresher.refresh() == 2
        assert aggregator.snapshot is not first
        assert first.queries["sofa"].products["B"].clicks == pytest.approx(1)  # unchanged
        assert aggregator.snapshot.queries["sofa"].products["B"].clicks == pytest.approx(2)

    def test_reads_in_batches(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        ingest(
            store, [{"type": "view", "session_id": "s", "product_id": f"P{i}"} for i in range(25)]
        )
        aggregator = BehaviourAggregator(BehaviourConfig(min_shoppers=1))
        assert SignalsRefresher(store, [aggregator], batch=10).refresh() == 25
        assert len(aggregator.snapshot.popularity) == 25

    def test_background_thread_picks_up_events(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        aggregator = BehaviourAggregator()
        refresher = SignalsRefresher(store, [aggregator], interval_s=0.05)
        refresher.start()
        try:
            ingest(store, session("desk", ["A"], {"A": 1}))
            deadline = time.monotonic() + 10
            while "desk" not in aggregator.snapshot.queries and time.monotonic() < deadline:
                time.sleep(0.02)
            assert "desk" in aggregator.snapshot.queries
        finally:
            refresher.stop()

    def test_retention_purges_old_events(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        ingest(
            store,
            [
                {
                    "type": "view",
                    "session_id": "s",
                    "product_id": "A",
                    "timestamp": NOW - 40 * DAY_S,
                },
                {"type": "view", "session_id": "s", "product_id": "B", "timestamp": NOW},
            ],
            now=NOW,
        )
        refresher = SignalsRefresher(store, [], retention_days=30, clock=lambda: NOW)
        assert refresher.purge_expired() == 1
        assert [e.product_id for e in store.scan()] == ["B"]
        assert SignalsRefresher(store, []).purge_expired() == 0

    def test_erasures_on_another_replica_reach_this_one(self, tmp_path: Path) -> None:
        here, there = SQLiteEventStore(tmp_path / "e.db"), SQLiteEventStore(tmp_path / "e.db")
        ingest(here, [{"type": "view", "session_id": "s", "product_id": "A", "user_id": "u1"}])
        recorder = Recorder()
        refresher = SignalsRefresher(here, [recorder], batch=2, clock=lambda: NOW)
        assert refresher.refresh() == 1
        assert recorder.publishes == 1
        for user in ("u1", "u2", "u3"):
            there.forget_user(user)  # on "another replica": only the shared store tells us
        assert refresher.refresh() == 0  # no new event ...
        assert recorder.forgotten == ["u1", "u2", "u3"]  # ... but three erasures, in 2 reads
        assert recorder.publishes == 2  # published, so searches stop seeing them
        assert refresher.refresh() == 0
        assert recorder.forgotten == ["u1", "u2", "u3"]  # each erasure is applied once
        assert recorder.publishes == 2

    def test_a_new_refresher_reads_the_whole_erasure_log(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        store.forget_user("u1")
        recorder = Recorder()
        SignalsRefresher(store, [recorder]).refresh()
        assert recorder.forgotten == ["u1"]  # harmless on fresh state, and no gap to reason about

    def test_erasure_records_expire(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        store.forget_user("u1")
        now = time.time()
        assert SignalsRefresher(store, [], clock=lambda: now).purge_erasures() == 0
        later = now + 8 * DAY_S
        assert SignalsRefresher(store, [], clock=lambda: later).purge_erasures() == 1
        assert store.erasures_since(0) == []

    def test_warns_when_the_log_was_not_read_for_longer_than_it_is_kept(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = [NOW]
        refresher = SignalsRefresher(
            SQLiteEventStore(tmp_path / "e.db"),
            [],
            erasure_retention_days=1,
            clock=lambda: clock[0],
        )
        refresher.refresh()
        clock[0] += 0.5 * DAY_S
        with caplog.at_level(logging.ERROR, logger="productsearch.behaviour"):
            refresher.refresh()
            assert caplog.text == ""
            clock[0] += 2 * DAY_S  # the store was out of reach for two days
            refresher.refresh()
        assert "restart this replica" in caplog.text

    def test_background_thread_applies_erasures(self, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        recorder = Recorder()
        refresher = SignalsRefresher(store, [recorder], interval_s=0.05)
        refresher.start()
        try:
            SQLiteEventStore(tmp_path / "e.db").forget_user("u9")
            deadline = time.monotonic() + 10
            while not recorder.forgotten and time.monotonic() < deadline:
                time.sleep(0.02)
            assert recorder.forgotten == ["u9"]
        finally:
            refresher.stop()

    @pytest.mark.parametrize(
        "kwargs",
        [{"interval_s": 0}, {"batch": 0}, {"retention_days": 0}, {"erasure_retention_days": 0}],
    )
    def test_bad_arguments(self, tmp_path: Path, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            SignalsRefresher(SQLiteEventStore(":memory:"), [], **kwargs)


class Recorder:
    """An aggregator that records what the refresher asks of it."""

    def __init__(self) -> None:
        self.folded = 0
        self.publishes = 0
        self.forgotten: list[str] = []

    def fold(self, events: Sequence[StoredEvent]) -> None:
        self.folded += len(events)

    def publish(self, now: float) -> None:
        self.publishes += 1

    def forget_user(self, user_id: str) -> None:
        self.forgotten.append(user_id)


class TestQueryKey:
    """Rules and behavioural signals key a query alike (one :func:`normalise_query`)."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", ""),
            ("...", ""),
            ("  Sofa,  GREY! ", "sofa grey"),
            ("sofa,grey", "sofa grey"),
            ("  Żółte   KRZESŁO ", "zolte krzeslo"),
            ("2x4 in", "2x4 in"),
            ("1/2 in. x 10 ft.", "1/2 in x 10 ft"),
            ("3.5 inch, .5 in", "3.5 inch .5 in"),
            ("1,000 lumen", "1,000 lumen"),
            ("10' ladder", "10' ladder"),
            ("men's shoes", "men s shoes"),
        ],
    )
    def test_punctuation_outside_a_word_is_dropped(self, text: str, expected: str) -> None:
        assert normalise_query(text) == expected

    def test_sofa_comma_grey_keys_the_same_for_rules_and_behaviour(self, tmp_path: Path) -> None:
        assert normalise_query("sofa, grey") == normalise_query("sofa grey")
        # Behaviour: searches typed either way pool under one key.
        events: list[dict[str, Any]] = []
        for i, text in enumerate(["sofa, grey", "Sofa grey", "sofa grey!"]):
            events += session(text, ["A"], {"A": 1}, sid=f"s{i}")
        queries = folded(events, tmp_path).snapshot.queries
        assert list(queries) == ["sofa grey"]
        assert queries["sofa grey"].products["A"].clicks == pytest.approx(3)
        event = Event("e", EventType.SEARCH, "s", NOW, query="sofa, grey")
        assert event.normalised_query == "sofa grey"
        # Rules: an exact rule written either way matches the query typed either way.
        boost = Boost(Selector(product_ids=("A",)), 0.5)
        for written in ("sofa, grey", "sofa grey"):
            rules = RuleSet([Rule(id="r", match="exact", query=written, actions=(boost,))])
            assert [r.id for r in rules.match("sofa, grey").rules] == ["r"]
            assert [r.id for r in rules.match("Sofa  grey").rules] == ["r"]
