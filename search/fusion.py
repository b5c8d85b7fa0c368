"""Fusion of retriever runs: pure functions from named ranked lists to one ranked list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from search.types import Hit


def reciprocal_rank_fusion(
    runs: Mapping[str, Sequence[Hit]],
    weights: Mapping[str, float] | None = None,
    k: float = 60.0,
) -> list[Hit]:
    """Weighted reciprocal rank fusion: ``score(d) = sum_r w_r / (k + rank_r(d))``.

    Args:
        runs: Retriever name -> its hits, best first.
        weights: Retriever name -> weight (missing names weigh 1; 0 drops the run).
        k: Rank smoothing constant (60 in the original paper).

    Returns:
        Fused hits (``source="fused"``), best first; ties keep the first run's order.
    """
    scores: dict[int, float] = {}
    for name, hits in runs.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        if weight == 0:
            continue
        for rank, hit in enumerate(hits, start=1):
            scores[hit.doc] = scores.get(hit.doc, 0.0) + weight / (k + rank)
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    return [Hit(doc, score, "fused") for doc, score in ranked]


def normalised_score_fusion(
    runs: Mapping[str, Sequence[Hit]],
    weights: Mapping[str, float] | None = None,
) -> list[Hit]:
    """Weighted sum of scores scaled to [0, 1] by each run's best score (missing = 0).

    Args:
        runs: Retriever name -> its hits, best first (scores higher is better, non-negative).
        weights: Retriever name -> weight (missing names weigh 1).

    Returns:
        Fused hits (``source="fused"``), best first.
    """
    scores: dict[int, float] = {}
    for name, hits in runs.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        if weight == 0 or not hits:
            continue
        top = max(hit.score for hit in hits) or 1.0
        for hit in hits:
            scores[hit.doc] = scores.get(hit.doc, 0.0) + weight * max(hit.score, 0.0) / top
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    return [Hit(doc, score, "fused") for doc, score in ranked]


FUSERS = {"rrf": reciprocal_rank_fusion, "score": normalised_score_fusion}
