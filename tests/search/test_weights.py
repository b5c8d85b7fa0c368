"""Ranking weights have one home for their defaults (search/weights.py)."""

from __future__ import annotations

import inspect

from api.settings import Settings
from search.engine import EngineConfig
from search.rank.behaviour import BehaviourReranker
from search.rank.personal import PersonalisationReranker
from search.weights import DEFAULT_WEIGHTS, RankingWeights


def test_every_default_comes_from_default_weights() -> None:
    config = EngineConfig()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert dict(config.weights) == dict(DEFAULT_WEIGHTS.retrievers)
    assert config.colour_weight == DEFAULT_WEIGHTS.colour_weight
    assert config.colour_rerank == DEFAULT_WEIGHTS.colour_rerank
    assert settings.behaviour_weight == DEFAULT_WEIGHTS.behaviour
    assert settings.personalisation_strength == DEFAULT_WEIGHTS.personalisation
    behaviour = inspect.signature(BehaviourReranker).parameters["weight"].default
    personal = inspect.signature(PersonalisationReranker).parameters["strength"].default
    assert (behaviour, personal) == (DEFAULT_WEIGHTS.behaviour, DEFAULT_WEIGHTS.personalisation)


def test_defaults_round_trip_and_each_engine_gets_its_own_mapping() -> None:
    assert RankingWeights.from_dict(DEFAULT_WEIGHTS.to_dict()) == DEFAULT_WEIGHTS
    first, second = EngineConfig(), EngineConfig()
    assert first.weights is not second.weights
