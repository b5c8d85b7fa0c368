"""Behavioural signals: what shoppers chose, learnt from events and used to rank.

* A **position-based click model** (PBM): a shopper clicks a result when they examine its
  position (probability ``theta[position]``, the position bias) and find it attractive
  (``alpha[query, product]``). Both are fitted by expectation-maximisation over the impressions
  (search events with the result ids shown) and clicks; ``alpha`` is smoothed towards the global
  mean with ``prior_strength`` pseudo-examinations, so a product seen twice is not judged on two
  coin flips (cold start).
* Per (query, product) add-to-cart and purchase rates per *expected examination* (impressions
  weighted by the position bias), smoothed the same way, and a **utility** that weighs the three.
* **Time-decayed popularity** per product (views, clicks, carts, purchases with a half-life).

**Evidence from several shoppers, bounded per shopper** (a forged or accidental event must not
move what everybody sees). A shopper is a user id, else a session. Each shopper counts at most
once per (query, product) for each of impression, click, add-to-cart and purchase, once per
(query, result page) for impressions, once per query for searches (and a search-as-you-type
keystroke that the shopper's next search extends within seconds not at all), for at most
``max_choices_per_query`` products of one query, and once per (product, event type) for
popularity. Shared signals then need several distinct shoppers (``min_shoppers``): a product
is lifted for a query only when that many chose it, a product counts as popular only when that
many interacted with it, and a query counts as searched (suggestions) only when that many
searched it. An impression without a click is never a verdict on its own: the click model
treats skips as evidence (position-bias corrected and smoothed towards the prior), and a
product is moved *down* only when at least ``demote_min_shoppers`` distinct shoppers were shown
it. A shopper's own history still personalises their own results (:mod:`search.personal`).

Every count is weighted by ``2 ** ((t - t_ref) / half_life)``: old events fade without a pass
over the aggregates, and rates (ratios) are unaffected by the common scale.

:class:`SignalsRefresher` folds events new since the last sequence number into the aggregators
on a background thread, drops the per-user state of users erased on any replica (the store's
erasure log), and publishes immutable snapshots; searches read the current snapshot (one
attribute read) and never wait for a refresh. :class:`BehaviouralRetriever` returns what
shoppers chose for the normalised query; :class:`BehaviourReranker` re-orders a fused list.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from events.store import (
    Event,
    EventStore,
    EventType,
    StoredEvent,
    normalise_query,
    superseded,
)
from search.errors import EventStoreUnavailableError
from search.types import Hit, SearchRequest
from search.understand import AnalyzedQuery

logger = logging.getLogger("productsearch.behaviour")

DAY_S = 86_400.0

CHOICES = frozenset({EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE})
"""Events that say a shopper chose a product (a view says only that they looked)."""


def shopper_of(event: Event) -> str:
    """Who an event counts for in the per-shopper caps: ``u:<user_id>``, else
    ``s:<session_id>``."""
    return f"u:{event.user_id}" if event.user_id else f"s:{event.session_id}"


@dataclass(frozen=True, slots=True)
class RankingContext:
    """Who is searching, where and when: what per-user re-rankers need besides the query.

    Attributes:
        user_id: The signed-in shopper, or None.
        session_id: The shopper's session, or None.
        channel: ``"web"``, ``"app"``... or None.
        segment: A segment forced by the caller (e.g. a campaign), or None to derive it from
            the shopper's profile.
        now: Request time, seconds since the Unix epoch.
    """

    user_id: str | None = None
    session_id: str | None = None
    channel: str | None = None
    segment: str | None = None
    now: float = field(default_factory=time.time)

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
    """

    before_rank: int
    after_rank: int
    before_score: float
    after_score: float
    reason: str

    def describe(self) -> str:
        """One line for :class:`search.types.Explanation` adjustments."""
        return f"rank {self.before_rank} -> {self.after_rank}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Reranked:
    """A re-ranker's output: the new list and its effect on each hit it touched.

    Attributes:
        hits: Hits, best first.
        effects: Document -> effect, for the hits the re-ranker acted on (evidence or
            affinity of their own); hits that only moved because others did are left out.
    """

    hits: list[Hit]
    effects: Mapping[int, Effect] = field(default_factory=dict)


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


# --------------------------------------------------------------------------------------------
# Aggregation


class Aggregator(Protocol):
    """Folds events into mutable state and publishes immutable snapshots of it.

    Only the refresher thread calls these methods; readers use the aggregator's ``snapshot``.
    """

    def fold(self, events: Sequence[StoredEvent]) -> None:
        """Add new events (in sequence order)."""
        ...

    def publish(self, now: float) -> None:
        """Build a new snapshot from the state and swap it in."""
        ...

    def forget_user(self, user_id: str) -> None:
        """Drop per-user state (aggregates that name nobody may stay)."""
        ...


class DecayClock:
    """Weights ``2 ** ((t - t_ref) / half_life)`` that make old events fade without rescans.

    Args:
        half_life_s: Seconds after which an event counts half.
    """

    def __init__(self, half_life_s: float) -> None:
        if not half_life_s > 0:
            raise ValueError("half_life must be positive")
        self.half_life_s = half_life_s
        self.t_ref: float | None = None

    def weight(self, t: float) -> float:
        """Weight of an event at time ``t`` (1 at ``t_ref``)."""
        if self.t_ref is None:
            self.t_ref = t
        # Clip the exponent: a stray far-future or ancient timestamp must not overflow.
        return float(2.0 ** max(-60.0, min(60.0, (t - self.t_ref) / self.half_life_s)))

    def scale(self, now: float) -> float:
        """Factor turning stored weights into weights as of ``now``."""
        if self.t_ref is None:
            return 1.0
        return float(2.0 ** max(-60.0, min(60.0, (self.t_ref - now) / self.half_life_s)))


@dataclass(frozen=True, slots=True)
class BehaviourConfig:
    """Settings of the behavioural signals.

    Attributes:
        half_life_days: Age at which an event counts half (popularity and rates).
        max_position: Deepest result position the click model tracks.
        prior_strength: Pseudo-examinations pulling a (query, product)'s rates towards the
            global means (cold-start smoothing).
        em_iterations: Expectation-maximisation rounds of the click model per publish.
        click_weight: Weight of the click rate in the utility.
        cart_weight: Weight of the add-to-cart rate in the utility.
        purchase_weight: Weight of the purchase rate in the utility.
        popularity_weights: Weight of each event type in popularity.
        min_shoppers: Distinct shoppers (users, else sessions) needed before a product is
            lifted for a query, counts as popular, or a query counts as searched.
        demote_min_shoppers: Distinct shoppers who must have been shown a product for a query
            before their skips can move it down.
        max_choices_per_query: Products of one query a shopper's clicks, carts and purchases
            count for (the first ones they chose).
    """

    half_life_days: float = 14.0
    max_position: int = 50
    prior_strength: float = 3.0
    em_iterations: int = 15
    click_weight: float = 1.0
    cart_weight: float = 2.0
    purchase_weight: float = 4.0
    popularity_weights: Mapping[str, float] = field(
        default_factory=lambda: {"view": 1.0, "click": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
    )
    min_shoppers: int = 3
    demote_min_shoppers: int = 10
    max_choices_per_query: int = 5

    def __post_init__(self) -> None:
        if not self.half_life_days > 0:
            raise ValueError("half_life_days must be positive")
        if self.max_position < 1:
            raise ValueError("max_position must be 1 or more")
        if self.prior_strength < 0:
            raise ValueError("prior_strength must be 0 or more")
        if self.min_shoppers < 1 or self.demote_min_shoppers < 1:
            raise ValueError("min_shoppers and demote_min_shoppers must be 1 or more")
        if self.max_choices_per_query < 1:
            raise ValueError("max_choices_per_query must be 1 or more")


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
    """

    queries: Mapping[str, QuerySignals] = field(default_factory=dict)
    popularity: Mapping[str, float] = field(default_factory=dict)
    position_bias: tuple[float, ...] = ()
    last_seq: int = 0
    built_at: float = 0.0
    min_shoppers: int = 0
    demote_min_shoppers: int = 0

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

    @property
    def max_popularity(self) -> float:
        """Highest popularity (0 when nothing is popular)."""
        return max(self.popularity.values(), default=0.0)


def fit_position_based_model(
    qd: npt.NDArray[np.int64],
    position: npt.NDArray[np.int64],
    impressions: npt.NDArray[np.float64],
    clicks: npt.NDArray[np.float64],
    n_pairs: int,
    n_positions: int,
    *,
    iterations: int = 15,
    prior_strength: float = 3.0,
    theta_strength: float = 50.0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """Fit a position-based click model by expectation-maximisation.

    Each cell is one (query-product pair, position) with its (weighted) impressions and clicks.

    Args:
        qd: Pair index of each cell (0..n_pairs-1).
        position: 0-based position of each cell (0..n_positions-1).
        impressions: Impressions of each cell.
        clicks: Clicks of each cell (at most ``impressions``).
        n_pairs: Number of pairs.
        n_positions: Number of positions.
        iterations: EM rounds.
        prior_strength: Pseudo-impressions of the global mean added to each pair's estimate.
        theta_strength: Pseudo-impressions of the prior bias curve added to each position.

    Returns:
        ``(theta, alpha, prior)``: examination probability per position (position 1 scaled to
        1 where it has data), attractiveness per pair, and the global mean attractiveness.
    """
    # Positions with little data keep a typical bias curve (1 / rank^0.7): the model is only
    # identifiable from many impressions, and a handful of skips must not zero a position.
    theta_prior = 1.0 / np.arange(1, n_positions + 1, dtype=np.float64) ** 0.7
    theta = theta_prior.copy()
    alpha = np.full(n_pairs, 0.2)
    if len(qd) == 0:
        return theta, alpha, 0.2
    clicks = np.minimum(clicks, impressions)
    skips = impressions - clicks
    per_position = np.bincount(position, impressions, n_positions)
    per_pair = np.bincount(qd, impressions, n_pairs)
    prior = 0.2
    for _ in range(iterations):
        a = alpha[qd]
        t = theta[position]
        denominator = np.maximum(1.0 - t * a, 1e-9)
        examined = clicks + skips * t * (1.0 - a) / denominator
        attracted = clicks + skips * a * (1.0 - t) / denominator
        theta = np.clip(
            (np.bincount(position, examined, n_positions) + theta_strength * theta_prior)
            / (per_position + theta_strength),
            1e-3,
            1.0,
        )
        attracted_per_pair = np.bincount(qd, attracted, n_pairs)
        prior = float(np.clip(attracted_per_pair.sum() / max(per_pair.sum(), 1e-12), 1e-4, 1.0))
        alpha = np.clip(
            (attracted_per_pair + prior_strength * prior) / (per_pair + prior_strength),
            1e-4,
            1.0,
        )
    return theta, alpha, prior


class RecentKeys:
    """Counts per key over a sliding span of event time, in bounded memory: what each shopper
    already contributed, for the per-shopper caps.

    Keys are stored as their 64-bit hashes (a collision merely drops one contribution) in two
    generations of ``window_s`` of event time each; when a new generation starts, the oldest
    is dropped. So a shopper's contribution is capped within at least one window (by then
    their earlier events have faded by the decay), and the memory holds two windows of
    traffic, not all of it.

    Args:
        window_s: Event-time span of one generation.
    """

    def __init__(self, window_s: float) -> None:
        if not window_s > 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._current: dict[int, int] = {}
        self._previous: dict[int, int] = {}
        self._started: float | None = None

    def advance(self, t: float) -> bool:
        """Move to event time ``t``; True when a new generation started."""
        if self._started is None:
            self._started = t
        elif t - self._started >= self.window_s:
            self._previous, self._current = self._current, {}
            self._started = t
            return True
        return False

    def count(self, key: object) -> int:
        """How often ``key`` was added in the two generations."""
        h = hash(key)
        return self._current.get(h, 0) + self._previous.get(h, 0)

    def add(self, key: object) -> bool:
        """Count ``key`` once more; True when it was not there."""
        h = hash(key)
        new = h not in self._current and h not in self._previous
        self._current[h] = self._current.get(h, 0) + 1
        return new

    def discard(self, key: object) -> None:
        """Forget ``key``."""
        h = hash(key)
        self._current.pop(h, None)
        self._previous.pop(h, None)

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


class BehaviourAggregator:
    """Folds events into click-model cells, per-pair outcomes and popularity (mutable, owned
    by the refresher) and publishes :class:`BehaviourSnapshot` objects.

    The click model is refitted over every cell at each publish (vectorised), but the per-query
    mappings searches read are rebuilt only for queries with new events; the others keep their
    signals until a full rebuild every ``full_rebuild_every`` publishes (their drift meanwhile
    is only the global position bias and priors moving slightly).

    Args:
        config: Settings.
        full_rebuild_every: Publishes between full rebuilds of the per-query mappings.

    Raises:
        ValueError: ``full_rebuild_every`` below 1.
    """

    def __init__(
        self, config: BehaviourConfig | None = None, *, full_rebuild_every: int = 20
    ) -> None:
        if full_rebuild_every < 1:
            raise ValueError("full_rebuild_every must be 1 or more")
        self.config = config or BehaviourConfig()
        self.full_rebuild_every = full_rebuild_every
        self._publishes = 0
        self._query_pairs: dict[str, list[int]] = {}
        self._dirty: set[str] = set()
        self.clock = DecayClock(self.config.half_life_days * DAY_S)
        self.snapshot = BehaviourSnapshot()
        self._pairs: dict[tuple[str, str], int] = {}
        self._pair_keys: list[tuple[str, str]] = []
        self._cells: dict[tuple[int, int], int] = {}
        self._cell_pair: list[int] = []
        self._cell_position: list[int] = []
        self._cell_impressions: list[float] = []
        self._cell_clicks: list[float] = []
        self._pair_clicks: list[float] = []
        self._pair_carts: list[float] = []
        self._pair_purchases: list[float] = []
        self._pair_shoppers: list[int] = []
        self._pair_viewers: list[int] = []
        self._searches: dict[str, float] = {}
        self._query_shoppers: dict[str, int] = {}
        self._popularity: dict[str, float] = {}
        self._product_shoppers: dict[str, int] = {}
        # What each shopper already contributed (the caps), over one half-life at least:
        # ("search", shopper, query), ("page", shopper, query, first position),
        # ("chose", shopper, pair, type), ("pair", shopper, pair), ("choices", shopper, query)
        # counting the products chosen, ("used", shopper, product, type), ("product", ...).
        self._seen = RecentKeys(self.config.half_life_days * DAY_S)
        # Session -> its last recorded search (without its results), its weight and whether
        # it counted as the shopper's first search of its query (taken back if it was only a
        # keystroke); cleared with each new generation of the caps.
        self._last_search: dict[str, tuple[Event, float, bool]] = {}
        self._last_seq = 0

    def _pair(self, query: str, product_id: str) -> int:
        key = (query, product_id)
        index = self._pairs.get(key)
        if index is None:
            index = self._pairs[key] = len(self._pair_keys)
            self._pair_keys.append(key)
            self._query_pairs.setdefault(query, []).append(index)
            self._pair_clicks.append(0.0)
            self._pair_carts.append(0.0)
            self._pair_purchases.append(0.0)
            self._pair_shoppers.append(0)
            self._pair_viewers.append(0)
        return index

    def _cell(self, pair: int, position: int) -> int:
        key = (pair, position)
        index = self._cells.get(key)
        if index is None:
            index = self._cells[key] = len(self._cell_pair)
            self._cell_pair.append(pair)
            self._cell_position.append(position)
            self._cell_impressions.append(0.0)
            self._cell_clicks.append(0.0)
        return index

    def fold(self, events: Sequence[StoredEvent]) -> None:
        """See :meth:`Aggregator.fold`: each shopper's events count within the caps of the
        module docstring; what goes beyond them is left out."""
        for stored in events:
            self._last_seq = max(self._last_seq, stored.seq)
            self._fold_one(stored.event)

    def _fold_one(self, event: Event) -> None:
        max_position = self.config.max_position
        w = self.clock.weight(event.timestamp)
        query = event.normalised_query
        shopper = shopper_of(event)
        seen = self._seen
        if seen.advance(event.timestamp):
            self._last_search.clear()
        if event.type is EventType.SEARCH:
            if not query:
                return
            self._take_back_keystroke(shopper, event)
            counted = seen.add(("search", shopper, query))
            if counted:
                self._searches[query] = self._searches.get(query, 0.0) + w
                self._query_shoppers[query] = self._query_shoppers.get(query, 0) + 1
            if event.query_id is not None:
                slim = dataclasses.replace(event, results=None, variants=None)
                self._last_search[event.session_id] = (slim, w, counted)
            self._dirty.add(query)
            first = max(1, event.position or 1)
            if not seen.add(("page", shopper, query, first)):
                return  # the same page seen again: one impression per shopper
            for offset, shown_id in enumerate(event.results or ()):
                position = first + offset
                if position > max_position:
                    break
                pair = self._pair(query, shown_id)
                self._pair_viewers[pair] += 1
                self._cell_impressions[self._cell(pair, position - 1)] += w
            return
        product_id = event.product_id
        if product_id is None:
            return
        weight = self.config.popularity_weights.get(event.type.value, 0.0)
        if weight and seen.add(("used", shopper, product_id, event.type.value)):
            self._popularity[product_id] = self._popularity.get(product_id, 0.0) + w * weight
            if seen.add(("product", shopper, product_id)):
                self._product_shoppers[product_id] = self._product_shoppers.get(product_id, 0) + 1
        if not query or event.type not in CHOICES:
            return
        pair = self._pair(query, product_id)
        if seen.count(("chose", shopper, pair, event.type.value)):
            return
        if not seen.count(("pair", shopper, pair)):
            if seen.count(("choices", shopper, query)) >= self.config.max_choices_per_query:
                return
            seen.add(("choices", shopper, query))
            seen.add(("pair", shopper, pair))
            self._pair_shoppers[pair] += 1
        seen.add(("chose", shopper, pair, event.type.value))
        self._dirty.add(query)
        if event.type is EventType.CLICK:
            self._pair_clicks[pair] += w
            if event.position is not None and event.position <= max_position:
                self._cell_clicks[self._cell(pair, event.position - 1)] += w
        elif event.type is EventType.ADD_TO_CART:
            self._pair_carts[pair] += w
        else:
            self._pair_purchases[pair] += w

    def _take_back_keystroke(self, shopper: str, event: Event) -> None:
        """Search-as-you-type records every keystroke ("s", "so", "sof", "sofa"): a search
        the same shopper's next one extended within seconds stops counting as a search of
        its query (its impressions stay: they were shown)."""
        last = self._last_search.get(event.session_id)
        if last is None or not last[2] or not superseded(last[0], event):
            return
        earlier = last[0].normalised_query or ""
        self._seen.discard(("search", shopper, earlier))
        self._searches[earlier] = max(0.0, self._searches.get(earlier, 0.0) - last[1])
        self._query_shoppers[earlier] = max(0, self._query_shoppers.get(earlier, 0) - 1)
        self._dirty.add(earlier)

    def forget_user(self, user_id: str) -> None:
        """Drop the user's last searches (the aggregates are counts over all shoppers and
        name nobody; the per-shopper caps keep only hashes, which expire with their window)."""
        self._last_search = {k: v for k, v in self._last_search.items() if v[0].user_id != user_id}

    def publish(self, now: float) -> None:
        """See :meth:`Aggregator.publish`: fits the click model and swaps in a snapshot."""
        full = self._publishes % self.full_rebuild_every == 0
        self.snapshot = self.build(now, full=full)
        self._publishes += 1

    def build(self, now: float, *, full: bool = True) -> BehaviourSnapshot:
        """A snapshot of the current state (fits the click model).

        Args:
            now: The time popularity is decayed to.
            full: Rebuild every query's mapping; False rebuilds only the queries with new
                events since the last build and reuses the current snapshot's others.
        """
        cfg = self.config
        n_pairs = len(self._pair_keys)
        qd = np.asarray(self._cell_pair, dtype=np.int64)
        position = np.asarray(self._cell_position, dtype=np.int64)
        impressions = np.asarray(self._cell_impressions, dtype=np.float64)
        clicks = np.asarray(self._cell_clicks, dtype=np.float64)
        # A click logged without its search still proves the result was seen.
        impressions = np.maximum(impressions, clicks)
        theta, alpha, prior = fit_position_based_model(
            qd,
            position,
            impressions,
            clicks,
            n_pairs,
            cfg.max_position,
            iterations=cfg.em_iterations,
            prior_strength=cfg.prior_strength,
        )
        examinations = np.bincount(qd, impressions * theta[position], n_pairs)
        shown = np.bincount(qd, impressions, n_pairs)
        pair_clicks = np.asarray(self._pair_clicks, dtype=np.float64)
        carts = np.asarray(self._pair_carts, dtype=np.float64)
        purchases = np.asarray(self._pair_purchases, dtype=np.float64)
        # Pairs with clicks but no impressions (clicks without position): count each as seen.
        examinations = np.maximum(examinations, pair_clicks)
        total_exam = max(float(examinations.sum()), 1e-12)
        m = cfg.prior_strength
        cart_prior = float(carts.sum()) / total_exam
        purchase_prior = float(purchases.sum()) / total_exam
        cart_rate = (carts + m * cart_prior) / (examinations + m)
        purchase_rate = (purchases + m * purchase_prior) / (examinations + m)
        no_cells = np.bincount(qd, minlength=n_pairs) == 0 if n_pairs else np.zeros(0, bool)
        # Pairs known only from clicks without position: alpha from raw clicks per "exam".
        alpha = np.where(no_cells, (pair_clicks + m * prior) / (examinations + m), alpha)
        pair_shoppers = self._pair_shoppers
        pair_viewers = self._pair_viewers
        utility = (
            cfg.click_weight * alpha
            + cfg.cart_weight * cart_rate
            + cfg.purchase_weight * purchase_rate
        )
        prior_utility = (
            cfg.click_weight * prior
            + cfg.cart_weight * cart_prior
            + cfg.purchase_weight * purchase_prior
        )
        queries: dict[str, QuerySignals] = {} if full else dict(self.snapshot.queries)
        # Queries with no product shown still count for popularity (suggestions, analytics).
        for query in (set(self._query_pairs) | set(self._searches)) if full else self._dirty:
            products = {}
            for i in self._query_pairs.get(query, ()):
                products[self._pair_keys[i][1]] = ProductSignals(
                    impressions=float(shown[i]),
                    examinations=float(examinations[i]),
                    clicks=float(pair_clicks[i]),
                    carts=float(carts[i]),
                    purchases=float(purchases[i]),
                    click_rate=float(alpha[i]),
                    cart_rate=float(cart_rate[i]),
                    purchase_rate=float(purchase_rate[i]),
                    utility=float(utility[i]),
                    shoppers=pair_shoppers[i],
                    viewers=pair_viewers[i],
                )
            searchers = self._query_shoppers.get(query, 0)
            queries[query] = QuerySignals(
                MappingProxyType(products),
                prior_utility,
                self._searches.get(query, 0.0) if searchers >= cfg.min_shoppers else 0.0,
                searchers,
            )
        self._dirty.clear()
        scale = self.clock.scale(now)
        # A product is popular once several shoppers chose or viewed it, not on one's say.
        popularity = {
            pid: w * scale
            for pid, w in self._popularity.items()
            if self._product_shoppers.get(pid, 0) >= cfg.min_shoppers
        }
        top = float(theta[0]) if len(theta) and theta[0] > 0 else 1.0
        return BehaviourSnapshot(
            queries=MappingProxyType(queries),
            popularity=MappingProxyType(popularity),
            position_bias=tuple(float(t / top) for t in theta),
            last_seq=self._last_seq,
            built_at=now,
            min_shoppers=cfg.min_shoppers,
            demote_min_shoppers=cfg.demote_min_shoppers,
        )


class SignalsRefresher:
    """Keeps aggregators up to date with an event store, in the background.

    Each refresh first reads the store's erasure log after the last erasure seen and makes
    every aggregator forget those users (whichever replica erased them), then reads the events
    after the last sequence number seen and folds them into every aggregator, and publishes new
    snapshots (only when something changed). Searches read the aggregators' snapshots and never
    wait for this.

    Erasure records are deleted from the store after ``erasure_retention_days`` (checked
    hourly, by every replica): they only have to outlive the longest time a replica may go
    without reading the log. A refresher that could not read it for longer logs an error: it
    may have missed erasures, and the replica should be restarted (it then rebuilds its state
    from the store, where the erased events no longer are).

    Args:
        store: The event store.
        aggregators: What to keep up to date (behaviour, profiles...).
        interval_s: Seconds between background refreshes.
        batch: Events (and erasures) read per round trip.
        retention_days: Events older than this are deleted from the store (checked hourly);
            None keeps them forever.
        erasure_retention_days: Erasure records older than this are deleted from the store.
        clock: The time source.

    Raises:
        ValueError: A non-positive interval, batch or retention.
    """

    def __init__(
        self,
        store: EventStore,
        aggregators: Sequence[Aggregator],
        *,
        interval_s: float = 2.0,
        batch: int = 20_000,
        retention_days: float | None = None,
        erasure_retention_days: float = 7.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not interval_s > 0 or batch < 1:
            raise ValueError("interval_s must be positive and batch 1 or more")
        if retention_days is not None and not retention_days > 0:
            raise ValueError("retention_days must be positive (or None to keep events)")
        if not erasure_retention_days > 0:
            raise ValueError("erasure_retention_days must be positive")
        self.store = store
        self.aggregators = tuple(aggregators)
        self.interval_s = interval_s
        self.batch = batch
        self.retention_days = retention_days
        self.erasure_retention_days = erasure_retention_days
        self.clock = clock
        self.last_seq = 0
        self.last_erasure_seq = 0
        self._erasures_read_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0

    def refresh(self) -> int:
        """Forget the users erased since the last refresh, fold every event new since then,
        and publish.

        Returns:
            Number of events folded.

        Raises:
            search.errors.EventStoreUnavailableError: The store cannot be reached (the
                snapshots stay as they were).
        """
        with self._lock:
            erased = self._forget_erased()
            folded = 0
            while True:
                events = self.store.read_since(self.last_seq, self.batch)
                if not events:
                    break
                for aggregator in self.aggregators:
                    aggregator.fold(events)
                self.last_seq = events[-1].seq
                folded += len(events)
                if len(events) < self.batch:
                    break
            if folded or erased:
                now = self.clock()
                for aggregator in self.aggregators:
                    aggregator.publish(now)
            return folded

    def _forget_erased(self) -> int:
        """Make every aggregator forget the users in the erasure log after the last one seen
        (call with ``_lock`` held). Returns the number of erasures read."""
        started = self.clock()
        erased = 0
        while True:
            erasures = self.store.erasures_since(self.last_erasure_seq, self.batch)
            if not erasures:
                break
            for erasure in erasures:
                for aggregator in self.aggregators:
                    aggregator.forget_user(erasure.user_id)
            self.last_erasure_seq = erasures[-1].seq
            erased += len(erasures)
            if len(erasures) < self.batch:
                break
        previous, self._erasures_read_at = self._erasures_read_at, started
        if previous is not None and started - previous > self.erasure_retention_days * DAY_S:
            logger.error(
                "the erasure log was last read %.1f days ago, longer than it is kept (%.1f "
                "days): erasures made meanwhile may be missed; restart this replica",
                (started - previous) / DAY_S,
                self.erasure_retention_days,
            )
        return erased

    def purge_expired(self) -> int:
        """Delete events older than the retention period (none without one).

        Returns:
            Events deleted.
        """
        if self.retention_days is None:
            return 0
        return self.store.purge_before(self.clock() - self.retention_days * DAY_S)

    def purge_erasures(self) -> int:
        """Delete erasure records older than ``erasure_retention_days``.

        Returns:
            Records deleted.
        """
        return self.store.purge_erasures_before(self.clock() - self.erasure_retention_days * DAY_S)

    def forget_user(self, user_id: str) -> int:
        """Erase a user: their events (and their sessions') and their per-user state here at
        once; the store logs the erasure, so the other replicas' refreshers follow within one
        refresh.

        Returns:
            Events deleted.

        Raises:
            search.errors.EventStoreUnavailableError: The store cannot be reached (nothing
                was erased).
        """
        with self._lock:
            deleted = self.store.forget_user(user_id)
            now = self.clock()
            for aggregator in self.aggregators:
                aggregator.forget_user(user_id)
                aggregator.publish(now)
            return deleted

    def start(self) -> None:
        """Start refreshing on a daemon thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="signals-refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                now = self.clock()
                if now - self._last_purge > 3600.0:
                    self._last_purge = now
                    self.purge_expired()
                    self.purge_erasures()
            except Exception as exc:  # keep serving the last snapshot; the log tells why
                if self._stop.is_set() or getattr(self.store, "_closed", False):
                    return  # the store was closed under us: shutting down, not a failure
                if isinstance(exc, EventStoreUnavailableError):
                    # Expected while the store is down: one line per attempt, no traceback.
                    logger.warning("refreshing behavioural signals: %s", exc)
                else:
                    logger.exception("refreshing behavioural signals failed")
            self._stop.wait(self.interval_s)


# --------------------------------------------------------------------------------------------
# Retrieval and re-ranking


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


class BehaviouralRetriever:
    """Products shoppers chose for this query: those whose smoothed utility beats the prior.

    Args:
        source: Where the current snapshot lives.
        doc_of: Product id -> document number of the serving snapshot.
        name: Retriever name in runs and explanations.
        min_examinations: Evidence needed before a product is returned.
    """

    def __init__(
        self,
        source: BehaviourSource,
        doc_of: Mapping[str, int],
        *,
        name: str = "behaviour",
        min_examinations: float = 1.0,
    ) -> None:
        self.source = source
        self.doc_of = doc_of
        self._name = name
        self.min_examinations = min_examinations

    @property
    def name(self) -> str:
        """Name used in runs, weights and explanations."""
        return self._name

    def retrieve(
        self, query: AnalyzedQuery, k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> list[Hit]:
        """The ``k`` products with the best utility for the normalised query text.

        Args:
            query: The query (its request text is what counts).
            k: At most this many hits.
            allowed: Filter mask, or None.

        Returns:
            Hits scored by utility, best first; empty for a query nobody searched.
        """
        snapshot = self.source.snapshot
        signals = snapshot.queries.get(normalise_query(query.request.text))
        if signals is None or k <= 0:
            return []
        scored: list[tuple[float, int]] = []
        for product_id, s in signals.products.items():
            doc = self.doc_of.get(product_id)
            if doc is None or s.examinations < self.min_examinations:
                continue
            if s.utility <= signals.prior_utility or s.shoppers < snapshot.min_shoppers:
                continue
            if allowed is not None and not allowed[doc]:
                continue
            scored.append((s.utility, doc))
        scored.sort(key=lambda x: (-x[0], x[1]))
        return [Hit(doc, utility, self._name) for utility, doc in scored[:k]]


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
        weight: Strength of the query-specific evidence.
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
        weight: float = 0.5,
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
            context: Unused: this evidence is the same for every shopper.

        Returns:
            The new order and each touched hit's effect.
        """
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
                scores[i] += self.weight * lift
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
