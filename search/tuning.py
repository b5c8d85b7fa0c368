"""What a merchandiser tunes, as a value passed with each search.

A shop serves one pipeline per snapshot. Ranking weights (a saved version's or an A/B arm's),
merchandising rules (pins, boosts, buries, hides, query synonyms, redirects) and the synonym
sets those rules carry change far more often than the snapshot and differ between shoppers in
one second; they travel with the request as a :class:`Tuning`, the way txtai passes weights per
call, instead of each variation building an engine of its own. The pipeline reads it at each
stage: the retrievers' fusion weights and the colour weight in retrieval, the colour, behaviour
and personalisation strengths in re-ranking, the rules in understanding (synonyms), filtering
(hides) and last in merchandising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from search.rules import RuleSet
from search.weights import DEFAULT_WEIGHTS, RankingWeights


@dataclass(frozen=True, slots=True)
class Tuning:
    """One request's ranking weights and merchandising rules.

    Attributes:
        weights: Fusion weight per retriever, colour weight and colour re-ranking, behaviour
            and personalisation strengths (:class:`search.weights.RankingWeights`).
        rules: The merchandising rules that apply, or None for none (a preview of a proposed
            rule set passes None and applies its own).
        synonyms: Query synonyms for this request over the configured ones (folded word ->
            words it also finds); the matched rules' synonyms come on top.
    """

    weights: RankingWeights = DEFAULT_WEIGHTS
    rules: RuleSet | None = None
    synonyms: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def retriever_weight(self, name: str) -> float:
        """Fusion weight of one retriever (1 for one the weights do not name); 0 turns it off
        for this request."""
        return float(self.weights.retrievers.get(name, 1.0))
