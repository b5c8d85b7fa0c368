"""Per-request tuning: weights, rules and synonyms are a value passed with each search, and one
engine ranks every variation exactly as an engine configured with it would."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from search.engine import EngineConfig, SearchEngine
from search.rules import RuleSet, rule_from_dict
from search.tuning import Tuning
from search.types import SearchRequest
from search.weights import DEFAULT_WEIGHTS, RankingWeights

QUERIES = ("oak chair", "dining", "red sofa", "grey couch", "walnut", "szafa", "jeans slim")


def ids(engine: SearchEngine, text: str, tuning: Tuning | None = None) -> list[str]:
    result = engine.search(SearchRequest(text=text, k=10, as_you_type=False), tuning)
    return [h.product.id for h in result.hits]


def configured(engine: SearchEngine, weights: RankingWeights) -> SearchEngine:
    """An engine whose own configuration carries ``weights`` (how variations were served
    before tuning values): the reference each tuned search must equal."""
    config = replace(
        engine.config,
        weights=dict(weights.retrievers),
        colour_weight=weights.colour_weight,
        colour_rerank=weights.colour_rerank,
    )
    return engine.with_config(config)


VARIATIONS = [
    RankingWeights(colour_weight=0.0, colour_rerank=0.0),
    RankingWeights(colour_weight=10.0, colour_rerank=100.0),
    RankingWeights(retrievers={"lexical": 0.0, "semantic": 0.4}),
    RankingWeights(retrievers={"lexical": 2.0, "semantic": 0.0}, colour_weight=0.3),
]


class TestWeights:
    @pytest.mark.parametrize("weights", VARIATIONS)
    def test_a_tuned_search_equals_a_configured_engine(
        self, core_engine: SearchEngine, weights: RankingWeights
    ) -> None:
        reference = configured(core_engine, weights)
        tuning = Tuning(weights)
        for text in QUERIES:
            assert ids(core_engine, text, tuning) == ids(reference, text), text

    def test_fusion_weights_merge_over_the_configured_ones(self, core_engine: SearchEngine) -> None:
        engine = core_engine.with_config(
            EngineConfig(weights={"lexical": 1.0, "semantic": 0.4, "image": 0.2})
        )
        tuning = Tuning(RankingWeights(retrievers={"lexical": 0.8, "semantic": 0.6}))
        assert engine.fusion_weights(tuning) == {"lexical": 0.8, "semantic": 0.6, "image": 0.2}
        assert engine.fusion_weights() == {"lexical": 1.0, "semantic": 0.4, "image": 0.2}

    def test_the_engine_default_is_its_configuration(self, core_engine: SearchEngine) -> None:
        config = EngineConfig(colour_weight=0.1, colour_rerank=0.2)
        weights = core_engine.with_config(config).tuning.weights
        assert (weights.colour_weight, weights.colour_rerank) == (0.1, 0.2)
        assert weights.behaviour == DEFAULT_WEIGHTS.behaviour

    def test_no_engine_is_built_for_a_variation(
        self, core_engine: SearchEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        built: list[Any] = []
        original = SearchEngine.__init__

        def counting(self: SearchEngine, *args: Any, **kwargs: Any) -> None:
            built.append(1)
            original(self, *args, **kwargs)

        monkeypatch.setattr(SearchEngine, "__init__", counting)
        rules = RuleSet((synonym_rule("r1", "settee", ["sofa"]),))
        for i in range(20):
            weights = RankingWeights(colour_weight=i / 10, behaviour=i / 20)
            ids(core_engine, "settee", Tuning(weights, rules))
            ids(core_engine, f"oak chair {i}", Tuning(weights, synonyms={"oak": ("walnut",)}))
        assert built == []


def synonym_rule(rule_id: str, word: str, words: list[str]) -> Any:
    return rule_from_dict(
        {
            "id": rule_id,
            "match": "contains",
            "query": word,
            "actions": [{"type": "synonyms", "words": [word, *words], "one_way": True}],
        }
    )


class TestRulesAndSynonyms:
    def test_rules_apply_to_the_request_that_carries_them(self, core_engine: SearchEngine) -> None:
        pin = rule_from_dict(
            {
                "id": "pin",
                "match": "exact",
                "query": "dining chair",
                "actions": [{"type": "pin", "product_id": "TABLE-1", "position": 1}],
            }
        )
        tuned = Tuning(rules=RuleSet((pin,)))
        assert ids(core_engine, "dining chair", tuned)[0] == "TABLE-1"
        assert ids(core_engine, "dining chair")[0] != "TABLE-1"

    def test_a_rules_synonyms_hold_for_that_request_only(self, core_engine: SearchEngine) -> None:
        assert ids(core_engine, "settee") == []
        tuned = Tuning(rules=RuleSet((synonym_rule("s", "settee", ["sofa"]),)))
        assert "SOFA-1" in ids(core_engine, "settee", tuned)
        assert ids(core_engine, "settee") == []  # the next request knows nothing of it

    def test_synonyms_of_the_tuning(self, core_engine: SearchEngine) -> None:
        tuned = Tuning(synonyms={"settee": ("sofa",)})
        assert "SOFA-1" in ids(core_engine, "settee", tuned)
        assert ids(core_engine, "settee") == []
