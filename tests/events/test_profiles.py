"""Shopper profiles folded from events: affinities, recent views and cart, segments, the
merge of a user's and a session's profile, and erasure on every replica."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from events.profiles import ProfileAggregator
from events.signals import SignalsRefresher
from events.store import SQLiteEventStore, ingest
from search.rank.context import RankingContext
from search.rank.personal import Catalogue, Segment
from tests.search.rank import PRODUCTS

NOW = 1_750_000_000.0 - (1_750_000_000.0 % 86400) + 12 * 3600  # noon UTC


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue(PRODUCTS)


def shop(
    user: str | None, session: str, actions: list[tuple[str, str]], **extra: Any
) -> list[dict[str, Any]]:
    out = []
    for i, (kind, pid) in enumerate(actions):
        e = {"type": kind, "session_id": session, "product_id": pid, "timestamp": NOW + i, **extra}
        if user:
            e["user_id"] = user
        out.append(e)
    return out


def profiles_of(
    events: list[dict[str, Any]], catalogue: Catalogue, tmp_path: Path
) -> ProfileAggregator:
    store = SQLiteEventStore(tmp_path / "e.db")
    ingest(store, events, now=NOW + 1000)
    aggregator = ProfileAggregator(catalogue)
    SignalsRefresher(store, [aggregator], clock=lambda: NOW).refresh()
    return aggregator


class TestProfiles:
    def test_affinities_recent_and_cart(self, catalogue: Catalogue, tmp_path: Path) -> None:
        events = shop(
            "u1",
            "s1",
            [
                ("view", "D2"),
                ("click", "D4"),
                ("add_to_cart", "D2"),
                ("add_to_cart", "D4"),
                ("purchase", "D4"),
            ],
            channel="app",
        )
        profile = profiles_of(events, catalogue, tmp_path).snapshot.profiles["user:u1"]
        assert profile.brands == {"makita": pytest.approx(1.0)}
        assert profile.categories["tools"] == pytest.approx(1.0)
        assert profile.recently_viewed == ("D4", "D2")
        assert profile.cart == ("D2",)  # D4 was bought
        assert profile.channel == "app"
        assert Segment.BRAND_LOYAL in profile.segments
        assert Segment.APP_SHOPPER in profile.segments
        assert profile.interactions == 5

    def test_sessions_have_profiles_too(self, catalogue: Catalogue, tmp_path: Path) -> None:
        snap = profiles_of(shop(None, "anon", [("view", "C1")]), catalogue, tmp_path).snapshot
        assert set(snap.profiles) == {"session:anon"}
        assert snap.profiles["session:anon"].segments == (Segment.NEW,)

    @pytest.mark.parametrize(
        ("products", "segment"),
        [
            (["C1", "C2", "C1", "C2"], Segment.BARGAIN_HUNTER),
            (["L1", "L2", "L1"], Segment.PREMIUM_BUYER),
            (["D1", "D2", "D3", "C1"], None),
        ],
    )
    def test_price_segments(
        self, catalogue: Catalogue, tmp_path: Path, products: list[str], segment: Segment | None
    ) -> None:
        events = shop("u", "s", [("purchase", p) for p in products])
        profile = profiles_of(events, catalogue, tmp_path).snapshot.profiles["user:u"]
        price_segments = {Segment.BARGAIN_HUNTER, Segment.PREMIUM_BUYER} & set(profile.segments)
        assert price_segments == ({segment} if segment else set())

    def test_night_owl(self, catalogue: Catalogue, tmp_path: Path) -> None:
        events = shop("u", "s", [("view", "D1")] * 3)
        for e in events:
            e["timestamp"] -= 13 * 3600  # 23:00 UTC the day before
        profile = profiles_of(events, catalogue, tmp_path).snapshot.profiles["user:u"]
        assert Segment.NIGHT_OWL in profile.segments

    def test_for_context_merges_user_and_session(
        self, catalogue: Catalogue, tmp_path: Path
    ) -> None:
        events = shop("u1", "old", [("purchase", "D2")]) + shop(None, "now", [("view", "D3")])
        snap = profiles_of(events, catalogue, tmp_path).snapshot
        merged = snap.for_context(RankingContext(user_id="u1", session_id="now"))
        assert merged is not None
        assert merged.brands == {"makita": pytest.approx(0.5), "bosch": pytest.approx(0.5)}
        assert snap.for_context(RankingContext(user_id="ghost")) is None
        assert snap.for_context(RankingContext()) is None

    def test_forget_user_drops_their_profiles(self, catalogue: Catalogue, tmp_path: Path) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        ingest(
            store,
            shop("u1", "s1", [("view", "D1")]) + shop("u2", "s2", [("view", "D2")]),
            now=NOW + 10,
        )
        aggregator = ProfileAggregator(catalogue)
        refresher = SignalsRefresher(store, [aggregator], clock=lambda: NOW)
        refresher.refresh()
        assert refresher.forget_user("u1") == 1
        assert set(aggregator.snapshot.profiles) == {"user:u2", "session:s2"}
        assert store.count() == 1

    def test_an_erasure_on_another_replica_drops_the_profiles_here(
        self, catalogue: Catalogue, tmp_path: Path
    ) -> None:
        a, b = SQLiteEventStore(tmp_path / "e.db"), SQLiteEventStore(tmp_path / "e.db")
        ingest(
            a,
            shop("u1", "s1", [("view", "D1")])
            + shop(None, "s3", [("view", "C1")])
            + shop("u1", "s3", [("view", "D2")])  # signed in mid-session
            + shop("u2", "s2", [("view", "D2")]),
            now=NOW + 10,
        )
        replicas = []
        for store in (a, b):
            aggregator = ProfileAggregator(catalogue)
            refresher = SignalsRefresher(store, [aggregator], clock=lambda: NOW)
            refresher.refresh()
            replicas.append((refresher, aggregator))
        (on_a, profiles_a), (on_b, profiles_b) = replicas
        assert {"user:u1", "session:s1", "session:s3"} <= set(profiles_b.snapshot.profiles)
        assert on_a.forget_user("u1") == 3
        assert set(profiles_a.snapshot.profiles) == {"user:u2", "session:s2"}  # at once
        assert on_b.refresh() == 0
        assert set(profiles_b.snapshot.profiles) == {"user:u2", "session:s2"}  # next refresh
        # Later events of the same user build a new profile from scratch.
        ingest(a, shop("u1", "s4", [("view", "L1")]), now=NOW + 10)
        on_b.refresh()
        assert profiles_b.snapshot.profiles["user:u1"].interactions == 1

    def test_a_shared_session_goes_with_either_user(
        self, catalogue: Catalogue, tmp_path: Path
    ) -> None:
        store = SQLiteEventStore(tmp_path / "e.db")
        ingest(
            store,
            shop("u1", "kiosk", [("view", "D1")]) + shop("u2", "kiosk", [("view", "D2")]),
            now=NOW + 10,
        )
        aggregator = ProfileAggregator(catalogue)
        aggregator.fold(store.read_since(0))
        aggregator.forget_user("u2")  # the store deletes the whole session too
        aggregator.publish(NOW)
        assert set(aggregator.snapshot.profiles) == {"user:u1"}
