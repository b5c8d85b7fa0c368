"""Behavioural ranking: the signals learnt from shoppers' events, as searches read them, and
the stages that use them.

:class:`BehaviourSnapshot` is an immutable view of the signals (per normalised query, the
smoothed click, add-to-cart and purchase rates and utility of each product shown or chosen;
time-decayed popularity; the position bias). :mod:`events.signals` folds events into it and
publishes a new one on each refresh; searches read the current one through a
:class:`BehaviourSource` (one attribute read) and never wait for a refresh.

:class:`BehaviourReranker` re-orders a fused list by the signals of the normalised query
(:func:`search.analysis.normalise_query`, the same key rules use), moving a product up only when
several distinct shoppers chose it and down only when many were shown it
(:meth:`BehaviourSnapshot.credible_lift`). Behaviour re-ranks what retrieval found and adds no
candidates of its own: a product shoppers chose was shown to them by this pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from search.analysis import normalise_query
from search.rank.context import RankingContext, Reranked, effects_of, normalised_scores
from search.types import Hit
from search.understand import AnalyzedQuery
from search.weights import DEFAULT_WEIGHTS


@dataclass(frozen=True, slots=True)
class ProductSignals:
    """What shoppers did with one product for one query (time-decayed, bias-corrected; each
    shopper counted at most once for each kind of event).

    Attributes:
        impressions: Times shown.
        examinations: Expected times looked at (impressions weighted by position bias).
        clicks: Clicks.
        carts: Add-to-carts.
        purchases: Purchases.
        click_rate: Smoothed attractiveness (PBM alpha): clicks per examination.
        cart_rate: Smoothed add-to-carts per examination.
        purchase_rate: Smoothed purchases per examination.
        utility: Weighted sum of the three rates.
        shoppers: Distinct shoppers who clicked, carted or bought it for the query.
        viewers: Distinct shoppers who were shown it for the query.
    """

    impressions: float
    examinations: float
    clicks: float
    carts: float
    purchases: float
    click_rate: float
    cart_rate: float
    purchase_rate: float
    utility: float
    shoppers: int = 0
    viewers: int = 0


@dataclass(frozen=True, slots=True)
class QuerySignals:
    """Signals of one normalised query.

    Attributes:
        products: Product id -> signals, for every product shown or chosen for the query.
        prior_utility: Utility of a product without evidence (the global means).
        searches: Time-decayed searches by distinct shoppers (each counted once), and 0 until
            ``min_shoppers`` of them searched it: what suggestions may call popular.
        shoppers: Distinct shoppers who searched it.
    """

    products: Mapping[str, ProductSignals]
    prior_utility: float
    searches: float
    shoppers: int = 0


@dataclass(frozen=True, slots=True)
class BehaviourSnapshot:
    """An immutable view of the behavioural signals (what searches read).

    Attributes:
        queries: Normalised query -> its signals.
        popularity: Product id -> time-decayed popularity as of ``built_at``.
        position_bias: Examination probability per position, relative to position 1
            (index 0 = position 1).
        last_seq: Last event sequence number folded in.
        built_at: When the snapshot was built.
        min_shoppers: Distinct shoppers who must have chosen a product before it is lifted
            (the aggregator's setting; 0 in a hand-built snapshot: all evidence counts).
        demote_min_shoppers: Distinct shoppers who must have been shown a product before it
            is moved down (likewise).
        searched: Normalised query -> its ``searches``, for the queries searched by enough
            shoppers (what suggestions offer); None derives it from ``queries``.
        max_popularity: Highest popularity (0 when nothing is popular), computed once.
    """

    queries: Mapping[str, QuerySignals] = field(default_factory=dict)
    popularity: Mapping[str, float] = field(default_factory=dict)
    position_bias: tuple[float, ...] = ()
    last_seq: int = 0
    built_at: float = 0.0
    min_shoppers: int = 0
    demote_min_shoppers: int = 0
    searched: Mapping[str, float] | None = None
    max_popularity: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        # Read by every search: computed once here, not over all products per search.
        object.__setattr__(self, "max_popularity", max(self.popularity.values(), default=0.0))

    def searched_queries(self) -> Mapping[str, float]:
        """Normalised query -> searches, for the queries searched by enough shoppers."""
        if self.searched is not None:
            return self.searched
        return {q: s.searches for q, s in self.queries.items() if s.searches > 0}

    def credible_lift(self, signals: QuerySignals, product: ProductSignals) -> float:
        """How far a (query, product)'s utility is above (+) or below (-) the prior, relative
        to it and clipped to -1..4; 0 without enough distinct shoppers for that direction."""
        prior = max(signals.prior_utility, 1e-6)
        lift = float(np.clip((product.utility - prior) / prior, -1.0, 4.0))
        if lift > 0 and product.shoppers < self.min_shoppers:
            return 0.0
        if lift < 0 and product.viewers < self.demote_min_shoppers:
            return 0.0
        return lift


class BehaviourSource(Protocol):
    """Anything holding a current :class:`BehaviourSnapshot` (an aggregator, a test double)."""

    @property
    def snapshot(self) -> BehaviourSnapshot:
        """The current snapshot."""
        ...


@dataclass(frozen=True, slots=True)
class StaticBehaviour:
    """A fixed snapshot as a :class:`BehaviourSource` (benchmarks, tests, offline use)."""

    snapshot: BehaviourSnapshot


class BehaviourReranker:
    """Moves up what shoppers chose for this query, and down what they skipped.

    Over the head of the list, each hit's score becomes ``base + weight * lift`` where ``base``
    is its score normalised to 0..1 and ``lift = (utility - prior) / prior`` clipped to
    -1..4, ``utility`` being its smoothed (query, product) utility: with little evidence it
    stays near the prior, so the lift grows with the examinations behind it. A lift up needs
    the snapshot's ``min_shoppers`` distinct shoppers who chose the product, a lift down its
    ``demote_min_shoppers`` distinct shoppers who were shown it
    (:meth:`BehaviourSnapshot.credible_lift`). Add ``popularity_weight`` times its
    time-decayed popularity relative to the most popular product. Hits beyond ``depth`` keep
    their order below; a list no evidence touches is returned as it came.

    Args:
        source: Where the current snapshot lives.
        product_ids: Product id of each document (``store.products[doc].id``).
        weight: Strength of the query-specific evidence when a request's context carries no
            weights (a request's ``RankingWeights.behaviour`` wins; 0 turns the stage off).
        popularity_weight: Strength of overall popularity (a tie-breaker).
        depth: Hits re-scored.
        name: Name in explanations.

    Raises:
        ValueError: A negative weight or a depth below 1.
    """

    def __init__(
        self,
        source: BehaviourSource,
        product_ids: Sequence[str],
        *,
        weight: float = DEFAULT_WEIGHTS.behaviour,
        popularity_weight: float = 0.02,
        depth: int = 50,
        name: str = "behaviour",
    ) -> None:
        if weight < 0 or popularity_weight < 0:
            raise ValueError("weights must be 0 or more")
        if depth < 1:
            raise ValueError("depth must be 1 or more")
        self.source = source
        self.product_ids = product_ids
        self.weight = weight
        self.popularity_weight = popularity_weight
        self.depth = depth
        self._name = name

    @property
    def name(self) -> str:
        """Name used in explanations."""
        return self._name

    def rerank(
        self, query: AnalyzedQuery, hits: list[Hit], context: RankingContext | None = None
    ) -> Reranked:
        """Re-score the head of ``hits`` with the shoppers' evidence.

        Args:
            query: The query.
            hits: Fused (and learned-ranked) hits, best first.
            context: The request's weights (``behaviour`` is this stage's strength; 0 leaves
                the list as it came, popularity included); the evidence itself is the same
                for every shopper. None keeps the strength it was built with.

        Returns:
            The new order and each touched hit's effect.
        """
        weight = self.weight
        if context is not None and context.weights is not None:
            weight = context.weights.behaviour
        if weight <= 0:
            return Reranked(list(hits))
        snapshot = self.source.snapshot
        signals = snapshot.queries.get(normalise_query(query.request.text))
        max_pop = snapshot.max_popularity if self.popularity_weight > 0 else 0.0
        if not hits or (signals is None and max_pop <= 0):
            return Reranked(list(hits))
        head, tail = hits[: self.depth], hits[self.depth :]
        base = normalised_scores(head)
        scores = base.copy()
        reasons: dict[int, str] = {}
        for i, hit in enumerate(head):
            product_id = self.product_ids[hit.doc]
            parts: list[str] = []
            s = signals.products.get(product_id) if signals is not None else None
            lift = (
                snapshot.credible_lift(signals, s)
                if s is not None and signals is not None and s.examinations > 0
                else 0.0
            )
            if s is not None and signals is not None and lift != 0.0:
                prior = max(signals.prior_utility, 1e-6)
                scores[i] += weight * lift
                parts.append(
                    f"shoppers: {s.clicks:.1f} clicks, {s.carts:.1f} carts, {s.purchases:.1f} "
                    f"purchases over {s.examinations:.1f} examinations by {s.viewers} shown and "
                    f"{s.shoppers} choosing (utility {s.utility:.3f} vs {prior:.3f} prior)"
                )
            if max_pop > 0:
                popularity = snapshot.popularity.get(product_id, 0.0)
                if popularity > 0:
                    scores[i] += self.popularity_weight * popularity / max_pop
                    parts.append(f"popularity {popularity / max_pop:.2f} of the top product")
            if parts:
                reasons[hit.doc] = "; ".join(parts)
        if not reasons:
            # No credible evidence on this page: leave the list (and its scores) untouched, so
            # the stages after this one see exactly what they would without events.
            return Reranked(list(hits))
        order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
        floor = float(scores.min()) if len(scores) else 0.0
        new_head = [Hit(head[i].doc, float(scores[i]), self._name) for i in order]
        # The tail keeps its order, scored below the head.
        tail_base = normalised_scores(tail)
        new_tail = [
            Hit(h.doc, floor - 1.0 - (1.0 - float(b)), h.source)
            for h, b in zip(tail, tail_base, strict=True)
        ]
        new_hits = new_head + new_tail
        return Reranked(new_hits, effects_of(hits, new_hits, reasons))
