"""Ranking weights: the one home of their defaults.

The fusion weight of each retriever, the colour match and colour re-ranking strengths, and the
behaviour and personalisation strengths are what a merchandiser tunes at run time (saved as
versions by ``merchandising/``). :data:`DEFAULT_WEIGHTS` is where their defaults are written:
``EngineConfig``, the re-rankers and the service settings all take theirs from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from search.errors import InvalidRequestError


def json_number(value: Any, name: str) -> float | None:
    """A number written as JSON (None stays None; booleans and NaN are refused).

    Raises:
        InvalidRequestError: ``value`` is not a number (naming ``name``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidRequestError(name, f"must be a number, got {value!r}")
    return float(value)


def default_retriever_weights() -> dict[str, float]:
    """Fusion weight per retriever (tuned on the Home Depot dev queries: score fusion with
    semantic at 0.4 gave nDCG@10 0.422 against 0.410 lexical-only)."""
    return {"lexical": 1.0, "semantic": 0.4}


@dataclass(frozen=True, slots=True)
class RankingWeights:
    """Ranking strengths a merchandiser changes at run time (versioned in the config store).

    Attributes:
        retrievers: Fusion weight per retriever (``EngineConfig.weights``); 0 turns one off.
        colour_weight: ``EngineConfig.colour_weight`` (colour words in the lexical match).
        colour_rerank: ``EngineConfig.colour_rerank`` (colour re-ranking strength).
        behaviour: ``BehaviourReranker.weight`` (query-specific click evidence).
        personalisation: ``PersonalisationReranker.strength``, 0..0.9.
    """

    retrievers: Mapping[str, float] = field(default_factory=default_retriever_weights)
    colour_weight: float = 0.6
    colour_rerank: float = 3.0
    behaviour: float = 0.5
    personalisation: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        """JSON form (read back by :meth:`from_dict`)."""
        return {
            "retrievers": dict(self.retrievers),
            "colour_weight": self.colour_weight,
            "colour_rerank": self.colour_rerank,
            "behaviour": self.behaviour,
            "personalisation": self.personalisation,
        }

    @classmethod
    def from_dict(cls, data: Any, name: str = "weights") -> RankingWeights:
        """Validate weights written as JSON; missing keys keep their defaults.

        Raises:
            InvalidRequestError: an unknown key or a value out of range (naming it).
        """
        if not isinstance(data, Mapping):
            raise InvalidRequestError(name, "must be an object")
        valid = ("retrievers", "colour_weight", "colour_rerank", "behaviour", "personalisation")
        for key in data:
            if key not in valid:
                raise InvalidRequestError(
                    f"{name}.{key}", f"unknown weight; valid: {', '.join(valid)}"
                )
        default = cls()
        retrievers = dict(default.retrievers)
        raw = data.get("retrievers", {})
        if not isinstance(raw, Mapping):
            raise InvalidRequestError(
                f"{name}.retrievers", "must be an object of retriever -> weight"
            )
        for key, value in raw.items():
            weight = json_number(value, f"{name}.retrievers.{key}")
            if weight is None or not 0 <= weight <= 100:
                raise InvalidRequestError(
                    f"{name}.retrievers.{key}", "must be a number from 0 to 100"
                )
            retrievers[str(key)] = weight
        limits = {
            "colour_weight": (0.0, 10.0),
            "colour_rerank": (0.0, 100.0),
            "behaviour": (0.0, 100.0),
            "personalisation": (0.0, 0.9),
        }
        values: dict[str, float] = {}
        for key, (lo, hi) in limits.items():
            value = json_number(data.get(key, getattr(default, key)), f"{name}.{key}")
            if value is None or not lo <= value <= hi:
                raise InvalidRequestError(
                    f"{name}.{key}", f"must be a number from {lo:g} to {hi:g}"
                )
            values[key] = value
        return cls(retrievers=retrievers, **values)


DEFAULT_WEIGHTS = RankingWeights()
"""The defaults every engine, re-ranker and setting starts from."""
