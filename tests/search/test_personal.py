"""Per-user ranking: item features, profiles and segments, and the bounded personalisation
re-ranker with its exact-match guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from events.store import SQLiteEventStore, ingest
from search.behaviour import RankingContext, SignalsRefresher
from search.engine import SearchEngine
from search.personal import (
    Catalogue,
    PersonalisationReranker,
    Profile,
    ProfileAggregator,
    ProfileSnapshot,
    Segment,
    StaticProfiles,
    is_exact_match,
    merge_profiles,
    price_band_edges,
    segment_profile,
)
from search.types import Hit, Product, SearchRequest
from search.understand import AnalyzedQuery

NOW = 1_750_000_000.0 - (1_750_000_000.0 % 86400) + 12 * 3600  # noon UTC

PRODUCTS = (
    Product(
        id="D1",
        title="Dewalt cordless drill",
        brand="DeWalt",
        price=199.0,
        colours=("yellow",),
        categories=(("Tools", "Drills"),),
    ),
    Product(
        id="D2",
        title="Makita cordless drill",
        brand="Makita",
        price=189.0,
        colours=("teal",),
        categories=(("Tools", "Drills"),),
    ),
    Product(
        id="D3",
        title="Bosch cordless drill",
        brand="Bosch",
        price=179.0,
        colours=("blue",),
        categories=(("Tools", "Drills"),),
    ),
    Product(
        id="D4",
        title="Makita drill bit set",
        brand="Makita",
        price=29.0,
        categories=(("Tools", "Accessories"),),
    ),
    Product(
        id="C1", title="Cheap hammer", brand="Acme", price=5.0, categories=(("Tools", "Hand"),)
    ),
    Product(
        id="C2",
        title="Budget screwdriver",
        brand="Acme",
        price=4.0,
        categories=(("Tools", "Hand"),),
    ),
    Product(
        id="L1", title="Luxury tool chest", brand="Snap", price=2500.0, categories=(("Storage",),)
    ),
    Product(
        id="L2", title="Premium work bench", brand="Snap", price=1900.0, categories=(("Storage",),)
    ),
    Product(
        id="M1",
        title="Makita impact driver",
        brand="Makita",
        price=210.0,
        categories=(("Tools", "Drivers"),),
    ),
    Product(
        id="M2",
        title="Makita angle grinder",
        brand="Makita",
        price=150.0,
        categories=(("Tools", "Grinders"),),
    ),
)
DOC = {p.id: i for i, p in enumerate(PRODUCTS)}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue(PRODUCTS)


def understand(engine: SearchEngine, text: str) -> AnalyzedQuery:
    return engine.understander.understand(SearchRequest(text=text, as_you_type=False))


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


class TestCatalogue:
    def test_features(self, catalogue: Catalogue) -> None:
        d1 = catalogue.get("D1")
        assert d1 is not None
        assert d1.brand == "dewalt"
        assert d1.categories == ("tools", "tools > drills")
        assert d1.colours == ("yellow",)
        assert d1.title_words == {"dewalt", "cordless", "drill"}
        assert catalogue.get("nope") is None

    def test_price_bands_split_the_catalogue_in_fifths(self, catalogue: Catalogue) -> None:
        bands = [f.price_band for f in catalogue.by_doc]
        assert min(b for b in bands if b is not None) == 0
        assert max(b for b in bands if b is not None) == 4
        assert catalogue.by_doc[DOC["L1"]].price_band == 4
        assert catalogue.by_doc[DOC["C2"]].price_band == 0

    def test_no_prices(self) -> None:
        assert price_band_edges([]) == ()
        assert Catalogue([Product(id="X", title="x")]).by_doc[0].price_band is None

    def test_brand_guess_for_brandless_products(self) -> None:
        catalogue = Catalogue([Product(id="X", title="Acme thing")], brand_of={"X": "Acme"})
        assert catalogue.by_doc[0].brand == "acme"


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

    def test_affinity_bounds_and_price_penalty(self, catalogue: Catalogue) -> None:
        bargain = Profile(key="user:b", price_bands={0: 1.0}, brands={"acme": 1.0}, interactions=5)
        luxury = catalogue.get("L1")
        cheap = catalogue.get("C1")
        assert luxury is not None and cheap is not None
        a_lux, why = bargain.affinity(luxury)
        a_cheap, _ = bargain.affinity(cheap)
        assert -1.0 <= a_lux < 0 < a_cheap <= 1.0
        assert "outside the usual price range" in why
        assert Profile(key="user:x").affinity(cheap) == (0.0, [])

    def test_merge_nothing(self) -> None:
        assert merge_profiles([]) is None
        assert merge_profiles([Profile(key="user:x")]) is None


def hits(ids: list[str], scores: list[float] | None = None) -> list[Hit]:
    scores = scores or [10.0 - i for i in range(len(ids))]
    return [Hit(DOC[p], s, "fused") for p, s in zip(ids, scores, strict=True)]


def makita_fan(strength: float = 0.3, **kwargs: Any) -> PersonalisationReranker:
    profile = Profile(key="user:fan", brands={"makita": 1.0}, interactions=10)
    source = StaticProfiles(ProfileSnapshot({"user:fan": profile}))
    return PersonalisationReranker(source, Catalogue(PRODUCTS), strength=strength, **kwargs)


FAN = RankingContext(user_id="fan")


class TestPersonalisationReranker:
    def test_lifts_the_preferred_brand_among_relevant_hits(self, core_engine: SearchEngine) -> None:
        query = understand(core_engine, "drill")
        out = makita_fan().rerank(query, hits(["D1", "D3", "D2"], [10.0, 9.5, 9.0]), FAN)
        assert [PRODUCTS[h.doc].id for h in out.hits] == ["D2", "D1", "D3"]
        effect = out.effects[DOC["D2"]]
        assert (effect.before_rank, effect.after_rank) == (3, 1)
        assert "brand makita" in effect.reason

    def test_factor_is_bounded(self, core_engine: SearchEngine) -> None:
        query = understand(core_engine, "drill")
        # D2 is far behind: even the full factor 1.3 cannot lift it past D1.
        out = makita_fan(0.3).rerank(query, hits(["D1", "D3", "D2"], [10.0, 8.0, 7.5]), FAN)
        assert [PRODUCTS[h.doc].id for h in out.hits] == ["D1", "D2", "D3"]
        base = {DOC["D1"]: 1.0, DOC["D3"]: 0.8, DOC["D2"]: 0.75}  # relative to the best
        for h in out.hits:
            assert 0.7 * base[h.doc] - 1e-9 <= h.score <= 1.3 * base[h.doc] + 1e-9

    def test_never_lifts_a_partial_match_over_an_exact_match(
        self, core_engine: SearchEngine
    ) -> None:
        query = understand(core_engine, "cordless drill")
        # D1 has both words in its title; M1 (Makita, no "cordless drill") must stay below it
        # however much the shopper likes Makita.
        out = makita_fan(0.9).rerank(query, hits(["D1", "M1"], [10.0, 9.9]), FAN)
        assert [PRODUCTS[h.doc].id for h in out.hits] == ["D1", "M1"]
        scores = [h.score for h in out.hits]
        assert scores == sorted(scores, reverse=True)
        # An exact match of the preferred brand still moves up.
        out = makita_fan(0.9).rerank(query, hits(["D1", "M1", "D2"], [10.0, 9.9, 9.8]), FAN)
        assert [PRODUCTS[h.doc].id for h in out.hits] == ["D2", "D1", "M1"]

    def test_hits_below_the_relevance_floor_stay_put(self, core_engine: SearchEngine) -> None:
        query = understand(core_engine, "tool")
        out = makita_fan(0.9, relevance_floor=0.5).rerank(
            query, hits(["L1", "L2", "M2"], [10.0, 9.0, 1.0]), FAN
        )
        assert [PRODUCTS[h.doc].id for h in out.hits] == ["L1", "L2", "M2"]

    def test_hits_past_depth_keep_their_order(self, core_engine: SearchEngine) -> None:
        query = understand(core_engine, "drill")
        order = ["D1", "D3", "D2", "M1", "M2"]
        out = makita_fan(depth=3).rerank(query, hits(order), FAN)
        assert [PRODUCTS[h.doc].id for h in out.hits][3:] == ["M1", "M2"]
        scores = [h.score for h in out.hits]
        assert scores == sorted(scores, reverse=True)

    @pytest.mark.parametrize(
        "context", [None, RankingContext(), RankingContext(user_id="stranger")]
    )
    def test_without_a_profile_nothing_changes(
        self, core_engine: SearchEngine, context: RankingContext | None
    ) -> None:
        original = hits(["D1", "D3", "D2"])
        out = makita_fan().rerank(understand(core_engine, "drill"), original, context)
        assert out.hits == original and out.effects == {}

    def test_zero_strength_and_empty_input(self, core_engine: SearchEngine) -> None:
        original = hits(["D1", "D2"])
        assert (
            makita_fan(0.0).rerank(understand(core_engine, "drill"), original, FAN).hits == original
        )
        assert makita_fan().rerank(understand(core_engine, "drill"), [], FAN).hits == []

    def test_a_segment_named_by_the_context(self, core_engine: SearchEngine) -> None:
        query = understand(core_engine, "gift")  # in neither title: no exact match to guard
        reranker = PersonalisationReranker(
            StaticProfiles(ProfileSnapshot()), Catalogue(PRODUCTS), strength=0.5
        )
        order = hits(["L1", "C1"], [10.0, 9.0])
        bargain = reranker.rerank(query, order, RankingContext(segment="bargain_hunter"))
        assert [PRODUCTS[h.doc].id for h in bargain.hits] == ["C1", "L1"]
        premium = reranker.rerank(query, order, RankingContext(segment="premium_buyer"))
        assert [PRODUCTS[h.doc].id for h in premium.hits] == ["L1", "C1"]
        assert segment_profile("brand_loyal") is None

    @pytest.mark.parametrize(
        "kwargs", [{"strength": -0.1}, {"strength": 0.95}, {"depth": 0}, {"relevance_floor": 1.5}]
    )
    def test_bad_arguments(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            PersonalisationReranker(
                StaticProfiles(ProfileSnapshot()), Catalogue(PRODUCTS), **kwargs
            )

    def test_is_exact_match(self, core_engine: SearchEngine, catalogue: Catalogue) -> None:
        d1, m1 = catalogue.get("D1"), catalogue.get("M1")
        assert d1 is not None and m1 is not None
        assert is_exact_match(understand(core_engine, "Cordless Drill"), d1)
        assert not is_exact_match(understand(core_engine, "cordless drill"), m1)
