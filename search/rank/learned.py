"""Learned relevance ranking: a model re-scores the top fused candidates from their features.

The model is any :class:`RelevanceScorer` (``models/ranker.py`` wraps LightGBM); the core only
computes features and orders by the scores, so it stays free of model runtimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from search.rank.context import Effect, RankingContext, Reranked
from search.rank.features import FEATURE_NAMES, FeatureExtractor
from search.types import Hit
from search.understand import AnalyzedQuery


@runtime_checkable
class RelevanceScorer(Protocol):
    """A trained model mapping feature rows to relevance scores."""

    name: str
    feature_names: tuple[str, ...]

    def warm_up(self) -> None:
        """Load the model; idempotent."""
        ...

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """One score per row; higher is more relevant."""
        ...


@dataclass(frozen=True, slots=True)
class LearnedRanker:
    """Re-orders the top ``depth`` fused candidates by a learned relevance model.

    Candidates below ``depth`` keep their fused order after the re-ranked ones. The hit score
    becomes the model's score (``source="learned"``).

    Attributes:
        extractor: Feature computation over the snapshot.
        scorer: The trained model; its feature names must equal :data:`FEATURE_NAMES`.
        depth: How many fused candidates the model re-scores.
    """

    extractor: FeatureExtractor
    scorer: RelevanceScorer
    depth: int = 100

    def __post_init__(self) -> None:
        if tuple(self.scorer.feature_names) != FEATURE_NAMES:
            raise ValueError(
                f"ranking model {self.scorer.name!r} was trained on features "
                f"{list(self.scorer.feature_names)}, this version computes {list(FEATURE_NAMES)}"
            )

    @property
    def name(self) -> str:
        """Stage name in explanations."""
        return "learned"

    def rank(
        self, query: AnalyzedQuery, fused: Sequence[Hit], runs: Mapping[str, Sequence[Hit]]
    ) -> list[Hit]:
        """Re-rank the head of the fused list."""
        head = list(fused[: self.depth])
        if len(head) < 2:
            return list(fused)
        features = self.extractor.extract(query, head, runs, query.vector)
        scores = self.scorer.score(features)
        order = np.argsort(-scores, kind="stable")
        ranked = [Hit(head[i].doc, float(scores[i]), "learned") for i in order]
        return ranked + list(fused[self.depth :])

    def rerank(self, query: AnalyzedQuery, hits: list[Hit], context: RankingContext) -> Reranked:
        """The pipeline's learned stage: :meth:`rank` with the retrievers' runs from
        ``context``; with ``context.explain``, each re-scored hit's fused and learned rank."""
        ranked = self.rank(query, hits, context.runs)
        if not context.explain or len(hits) < 2:
            return Reranked(ranked)
        fused_rank = {h.doc: rank for rank, h in enumerate(hits[: self.depth], start=1)}
        effects: dict[int, Effect] = {}
        for rank, hit in enumerate(ranked[: len(fused_rank)], start=1):
            before = fused_rank[hit.doc]
            line = (
                f"{self.scorer.name}: fused rank {before} -> {rank} (model score {hit.score:.3f})"
            )
            effects[hit.doc] = Effect(before, rank, hits[before - 1].score, hit.score, "", line)
        return Reranked(ranked, effects)
