"""Fusion of retriever runs: pure functions from named ranked lists to one ranked list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from search.types import Hit


def _ranked(
    docs: list[npt.NDArray[np.int64]], contributions: list[npt.NDArray[np.float64]]
) -> list[Hit]:
    """Sum each document's contributions and order best first; ties keep the order in which
    documents first appear (run by run), as a stable sort of a dict's items would."""
    if not docs:
        return []
    all_docs = np.concatenate(docs)
    if len(all_docs) == 0:
        return []
    unique, first, inverse = np.unique(all_docs, return_index=True, return_inverse=True)
    # bincount adds in input order: the same sums, to the last bit, as adding run by run.
    totals = np.bincount(inverse, weights=np.concatenate(contributions), minlength=len(unique))
    appearance = np.argsort(first, kind="stable")
    unique, totals = unique[appearance], totals[appearance]
    order = np.argsort(-totals, kind="stable")
    return [
        Hit(d, s, "fused")
        for d, s in zip(unique[order].tolist(), totals[order].tolist(), strict=True)
    ]


def _run_arrays(hits: Sequence[Hit]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    docs = np.fromiter((h.doc for h in hits), dtype=np.int64, count=len(hits))
    scores = np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits))
    return docs, scores


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
    docs, contributions = [], []
    for name, hits in runs.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        if weight == 0:
            continue
        run_docs, _ = _run_arrays(hits)
        docs.append(run_docs)
        contributions.append(weight / (k + np.arange(1, len(hits) + 1, dtype=np.float64)))
    return _ranked(docs, contributions)


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
    docs, contributions = [], []
    for name, hits in runs.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        if weight == 0 or not hits:
            continue
        run_docs, scores = _run_arrays(hits)
        top = float(scores.max()) or 1.0
        docs.append(run_docs)
        contributions.append(weight * np.maximum(scores, 0.0) / top)
    return _ranked(docs, contributions)


FUSERS = {"rrf": reciprocal_rank_fusion, "score": normalised_score_fusion}
