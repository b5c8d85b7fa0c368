"""Per-user ranking: item features, profile affinity and segments, and the bounded
personalisation re-ranker with its exact-match guard."""

from __future__ import annotations

from typing import Any

import pytest

from search.engine import SearchEngine
from search.rank.context import RankingContext
from search.rank.personal import (
    Catalogue,
    PersonalisationReranker,
    Profile,
    ProfileSnapshot,
    StaticProfiles,
    is_exact_match,
    merge_profiles,
    price_band_edges,
    segment_profile,
)
from search.types import Hit, Product, SearchRequest
from search.understand import AnalyzedQuery
from tests.search.rank import DOC, PRODUCTS


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue(PRODUCTS)


def understand(engine: SearchEngine, text: str) -> AnalyzedQuery:
    return engine.understander.understand(SearchRequest(text=text, as_you_type=False))


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


class TestProfile:
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
