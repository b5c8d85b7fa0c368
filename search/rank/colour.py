"""Colour re-ranking: shades close to the asked colour rise among the products that match the
query's other words."""

from __future__ import annotations

import numpy as np

from search.index.colours import ColourIndex
from search.rank.context import RankingContext, Reranked
from search.types import Hit
from search.understand import AnalyzedQuery
from search.weights import DEFAULT_WEIGHTS


class ColourReranker:
    """Re-orders hits by colour when the query asks for one.

    The learned ranker does not see colours, so after it each hit's rank score (1 for the first
    of n hits down to 1/n) gains ``strength`` times its colour closeness, but only for hits that
    match every other word of the query ("navy shirt": shirts of the right colour rise among
    shirts; a navy sock does not jump over them). Rank-based, because the learned head and the
    fused tail carry scores on different scales.

    Args:
        colours: The snapshot's product colours.
        strength: Strength when a request's context carries no weights (its
            ``RankingWeights.colour_rerank`` wins; 0 turns the stage off).
    """

    name = "colour"

    def __init__(
        self, colours: ColourIndex, strength: float = DEFAULT_WEIGHTS.colour_rerank
    ) -> None:
        self.colours = colours
        self.strength = strength

    def rerank(self, query: AnalyzedQuery, hits: list[Hit], context: RankingContext) -> Reranked:
        """Re-score the hits by rank plus colour closeness (see the class)."""
        strength = self.strength if context.weights is None else context.weights.colour_rerank
        if not query.colours or strength <= 0 or len(hits) < 2:
            return Reranked(hits)
        norm = 1.0 - np.arange(len(hits), dtype=np.float64) / len(hits)
        docs = np.fromiter((h.doc for h in hits), dtype=np.int64, count=len(hits))
        closeness = self.colours.match_all(query.colours)[docs].astype(np.float64)
        lexical = context.lexical
        if lexical is not None and lexical.other_matched is not None and lexical.other_groups:
            complete = lexical.other_matched[docs] >= lexical.other_groups
            closeness = np.where(complete, closeness, 0.0)
        final = norm + strength * closeness
        order = np.argsort(-final, kind="stable")
        return Reranked([Hit(hits[i].doc, float(final[i]), "colour") for i in order])
