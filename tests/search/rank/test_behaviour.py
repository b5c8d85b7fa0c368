"""Behavioural ranking: the behavioural retriever and re-ranker, over signals folded from
shopper sessions."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from events.signals import BehaviourAggregator
from search.engine import SearchEngine
from search.rank.behaviour import (
    BehaviourReranker,
    BehaviourSnapshot,
    StaticBehaviour,
)
from search.rank.context import RankingContext
from search.types import Hit, SearchRequest
from search.understand import AnalyzedQuery
from tests.events.shoppers import NOW, folded, session


def understand(engine: SearchEngine, text: str) -> AnalyzedQuery:
    return engine.understander.understand(SearchRequest(text=text, as_you_type=False))


@pytest.fixture
def trained(tmp_path: Path) -> BehaviourAggregator:
    """Shoppers searching "oak chair" skip CHAIR-1 at the top and pick CHAIR-2 below it."""
    rng = random.Random(1)
    events: list[dict[str, Any]] = []
    for i in range(40):
        clicks = {"CHAIR-2": 2} if rng.random() < 0.6 else {}
        if rng.random() < 0.05:
            clicks["CHAIR-1"] = 1
        carts = ("CHAIR-2",) if "CHAIR-2" in clicks and i % 3 == 0 else ()
        events += session(
            "oak chair", ["CHAIR-1", "CHAIR-2", "TABLE-1"], clicks, carts=carts, sid=f"s{i}"
        )
    events.append({"type": "purchase", "session_id": "x", "product_id": "SOFA-1", "timestamp": NOW})
    return folded(events, tmp_path)


def hits_of(engine: SearchEngine, ids: list[str]) -> list[Hit]:
    return [Hit(engine.store.doc_of[pid], 10.0 - i, "fused") for i, pid in enumerate(ids)]


class TestBehaviourReranker:
    def test_moves_the_chosen_product_up_and_explains(
        self, core_engine: SearchEngine, trained: BehaviourAggregator
    ) -> None:
        ids = [p.id for p in core_engine.store.products]
        reranker = BehaviourReranker(trained, ids, weight=0.5)
        hits = hits_of(core_engine, ["CHAIR-1", "CHAIR-2", "TABLE-1"])
        out = reranker.rerank(understand(core_engine, "oak chair"), hits, RankingContext())
        assert [ids[h.doc] for h in out.hits][:2] == ["CHAIR-2", "CHAIR-1"]
        effect = out.effects[core_engine.store.doc_of["CHAIR-2"]]
        assert (effect.before_rank, effect.after_rank) == (2, 1)
        assert "clicks" in effect.reason and effect.describe().startswith("rank 2 -> 1")
        scores = [h.score for h in out.hits]
        assert scores == sorted(scores, reverse=True)

    def test_unknown_query_keeps_the_order(
        self, core_engine: SearchEngine, trained: BehaviourAggregator
    ) -> None:
        ids = [p.id for p in core_engine.store.products]
        reranker = BehaviourReranker(trained, ids, popularity_weight=0.0)
        hits = hits_of(core_engine, ["WARDROBE-1", "SOFA-1"])
        out = reranker.rerank(understand(core_engine, "wardrobe"), hits)
        assert out.hits == hits and out.effects == {}

    def test_popularity_lifts_a_popular_product(self, core_engine: SearchEngine) -> None:
        ids = [p.id for p in core_engine.store.products]
        snapshot = BehaviourSnapshot(popularity={"SOFA-1": 5.0, "WARDROBE-1": 0.5})
        reranker = BehaviourReranker(StaticBehaviour(snapshot), ids, popularity_weight=0.6)
        hits = [Hit(core_engine.store.doc_of[p], 1.0, "fused") for p in ["WARDROBE-1", "SOFA-1"]]
        out = reranker.rerank(understand(core_engine, "wardrobe"), hits)
        assert [ids[h.doc] for h in out.hits] == ["SOFA-1", "WARDROBE-1"]
        assert "popularity 1.00" in out.effects[core_engine.store.doc_of["SOFA-1"]].reason

    def test_hits_past_depth_keep_their_order_below(
        self, core_engine: SearchEngine, trained: BehaviourAggregator
    ) -> None:
        ids = [p.id for p in core_engine.store.products]
        reranker = BehaviourReranker(trained, ids, depth=2)
        order = ["CHAIR-1", "CHAIR-2", "TABLE-1", "SOFA-1"]
        out = reranker.rerank(understand(core_engine, "oak chair"), hits_of(core_engine, order))
        assert [ids[h.doc] for h in out.hits][2:] == ["TABLE-1", "SOFA-1"]
        assert out.hits[2].score < out.hits[1].score

    def test_empty_input(self, core_engine: SearchEngine) -> None:
        reranker = BehaviourReranker(StaticBehaviour(BehaviourSnapshot()), [])
        assert reranker.rerank(understand(core_engine, "oak"), []).hits == []

    @pytest.mark.parametrize("kwargs", [{"weight": -1.0}, {"depth": 0}])
    def test_bad_arguments(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            BehaviourReranker(StaticBehaviour(BehaviourSnapshot()), [], **kwargs)
