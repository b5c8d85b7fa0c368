"""What re-rankers share: who is searching and what retrieval found (:class:`RankingContext`),
what a re-ranker returns (:class:`Reranked`, with an :class:`Effect` per hit it moved for the
explanations), and the score helpers every re-ranker uses (:func:`normalised_scores`,
:func:`effects_of`)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from search.index.lexical import GroupScores
from search.types import Hit, SearchRequest
from search.weights import RankingWeights


@dataclass(frozen=True, slots=True)
class RankingContext:
    """What re-rankers need besides the query and the hits: who is searching, where and when,
    the request's ranking weights, and what retrieval found.

    Attributes:
        user_id: The signed-in shopper, or None.
        session_id: The shopper's session, or None.
        channel: ``"web"``, ``"app"``... or None.
        segment: A segment forced by the caller (e.g. a campaign), or None to derive it from
            the shopper's profile.
        now: Request time, seconds since the Unix epoch.
        weights: The request's ranking weights (its tuning: a saved version's or an A/B
            arm's); re-rankers take their strengths from here. None (a re-ranker used on its
            own): each keeps the strength it was built with.
        runs: Each retriever's hits, by retriever name (the learned ranker's features).
        lexical: The lexical retriever's raw scores of every document, or None (which query
            words each product matched: the colour re-ranking's evidence).
        allowed: The request's filter mask, or None for none (a stage that retrieves more,
            like the semantic fallback, keeps to it).
        depth: Candidates a stage that retrieves more may return.
        explain: Whether the request asked for explanations (stages whose effects cost work
            record them only then).
    """

    user_id: str | None = None
    session_id: str | None = None
    channel: str | None = None
    segment: str | None = None
    now: float = field(default_factory=time.time)
    weights: RankingWeights | None = None
    runs: Mapping[str, Sequence[Hit]] = field(default_factory=dict)
    lexical: GroupScores | None = None
    allowed: npt.NDArray[np.bool_] | None = None
    depth: int = 0
    explain: bool = False

    @classmethod
    def from_request(cls, request: SearchRequest, now: float | None = None) -> RankingContext:
        """The context of a search request.

        Args:
            request: The request (its ``user_id``, ``session_id`` and ``channel``).
            now: Request time (default: the clock).
        """
        return cls(
            user_id=request.user_id,
            session_id=request.session_id,
            channel=request.channel.lower() if request.channel else None,
            now=time.time() if now is None else now,
            explain=request.explain,
        )

    @property
    def hour(self) -> int:
        """Hour of day (UTC, 0-23) of ``now``."""
        return int(self.now // 3600) % 24


@dataclass(frozen=True, slots=True)
class Effect:
    """What a re-ranker did to one hit (for explanations).

    Attributes:
        before_rank: 1-based rank in the list the re-ranker received.
        after_rank: 1-based rank in the list it returned.
        before_score: Score received.
        after_score: Score returned.
        reason: Why, in words a merchandiser understands.
        line: The whole explanation line, when the stage words it its own way.
    """

    before_rank: int
    after_rank: int
    before_score: float
    after_score: float
    reason: str
    line: str | None = None

    def describe(self) -> str:
        """One line for :class:`search.types.Explanation` adjustments (``line`` when the
        stage wrote its own)."""
        if self.line is not None:
            return self.line
        return f"rank {self.before_rank} -> {self.after_rank}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Reranked:
    """A re-ranker's output: the new list and its effect on each hit it touched.

    Attributes:
        hits: Hits, best first.
        effects: Document -> effect, for the hits the re-ranker acted on (evidence or
            affinity of their own); hits that only moved because others did are left out.
        fallback: Set by a stage that filled an empty list with hits of its own (the answer's
            ``fallback``: how its hits were found).
    """

    hits: list[Hit]
    effects: Mapping[int, Effect] = field(default_factory=dict)
    fallback: str | None = None


def normalised_scores(hits: Sequence[Hit]) -> npt.NDArray[np.float64]:
    """Scores scaled to 0..1 over the list (best 1); all equal -> rank-based 1..1/n.

    Re-rankers combine their evidence with these, not with raw scores, whose scale depends on
    the stage before (BM25F, fusion, the learned ranker's log-odds).
    """
    if not hits:
        return np.zeros(0)
    scores = np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits))
    low, high = float(scores.min()), float(scores.max())
    if not math.isfinite(low) or not math.isfinite(high) or high - low <= 1e-12:
        return 1.0 / np.arange(1, len(hits) + 1, dtype=np.float64)
    return (scores - low) / (high - low)


def effects_of(
    before: Sequence[Hit], after: Sequence[Hit], reasons: Mapping[int, str]
) -> dict[int, Effect]:
    """Effects for the documents in ``reasons`` (rank and score before and after)."""
    old = {h.doc: (rank, h.score) for rank, h in enumerate(before, start=1)}
    new = {h.doc: (rank, h.score) for rank, h in enumerate(after, start=1)}
    out: dict[int, Effect] = {}
    for doc, reason in reasons.items():
        if doc in old and doc in new:
            out[doc] = Effect(old[doc][0], new[doc][0], old[doc][1], new[doc][1], reason)
    return out
