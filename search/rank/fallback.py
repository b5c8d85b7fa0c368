"""The semantic fallback: nearest products by meaning when nothing else matched."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from search.rank.context import RankingContext, Reranked
from search.retrievers import SemanticRetriever, VectorIndex
from search.types import Hit
from search.understand import AnalyzedQuery


class SemanticFallback:
    """Fills an empty list with the nearest products by meaning.

    For a query nothing matched (no word, correction or sound-alike in the catalogue, nothing
    above the usual similarity floor) the floor is lowered by ``margin`` so a shopper almost
    never sees an empty page, while products far from the query stay out. A request whose
    weights turn the semantic retriever off gets no fallback either.

    Args:
        embed: Embeds query texts (the semantic retriever's embedder).
        index: The snapshot's text vectors.
        min_similarity: The lowered floor (the semantic retriever's floor minus the margin).
        semantic_margin: Hits more than this below the best one are dropped.
    """

    name = "semantic"

    def __init__(
        self,
        embed: Callable[[Sequence[str]], npt.NDArray[np.float32]],
        index: VectorIndex,
        min_similarity: float,
        semantic_margin: float,
    ) -> None:
        self.retriever = SemanticRetriever(
            "fallback", embed, index, max(min_similarity, 0.0), semantic_margin
        )

    def rerank(self, query: AnalyzedQuery, hits: list[Hit], context: RankingContext) -> Reranked:
        """The hits unchanged when there are any, else the fallback's (``fallback`` set when
        it found some)."""
        if hits or not query.semantic_text.strip():
            return Reranked(hits)
        if context.weights is not None and context.weights.retrievers.get("semantic", 1.0) <= 0:
            return Reranked(hits)
        found = self.retriever.retrieve(query, context.depth, context.allowed)
        return Reranked(found, fallback=self.name if found else None)
