"""Behavioural signals: what shoppers chose, learnt from events (the ranking stages that read
them are in :mod:`search.rank.behaviour`).

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
it. A shopper's own history still personalises their own results (:mod:`events.profiles`,
:mod:`search.rank.personal`).

Every count is weighted by ``2 ** ((t - t_ref) / half_life)``: old events fade without a pass
over the aggregates, and rates (ratios) are unaffected by the common scale.

:class:`SignalsRefresher` folds events new since the last sequence number into the aggregators
on a background thread, drops the per-user state of users erased on any replica (the store's
erasure log), and publishes immutable snapshots; searches read the current snapshot (one
attribute read) and never wait for a refresh. Events are keyed by
:func:`search.analysis.normalise_query` of their query, the key merchandising rules use too.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from events.store import (
    Event,
    EventStore,
    EventType,
    StoredEvent,
    superseded,
)
from search.errors import EventStoreUnavailableError
from search.rank.behaviour import BehaviourSnapshot, ProductSignals, QuerySignals

logger = logging.getLogger("productsearch.behaviour")

DAY_S = 86_400.0

CHOICES = frozenset({EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE})
"""Events that say a shopper chose a product (a view says only that they looked)."""


def shopper_of(event: Event) -> str:
    """Who an event counts for in the per-shopper caps: ``u:<user_id>``, else
    ``s:<session_id>``."""
    return f"u:{event.user_id}" if event.user_id else f"s:{event.session_id}"


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
    start: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
    tolerance: float = 0.0,
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
        start: ``(theta, alpha)`` of an earlier fit to start from (warm start: a fit over a
            few more events converges in a few rounds); ``alpha`` may cover fewer pairs (the
            pairs added since start at 0.2).
        tolerance: Stop before ``iterations`` rounds once no attractiveness and no position
            bias moved by more than this in a round (0: always run every round).

    Returns:
        ``(theta, alpha, prior)``: examination probability per position (position 1 scaled to
        1 where it has data), attractiveness per pair, and the global mean attractiveness.
    """
    # Positions with little data keep a typical bias curve (1 / rank^0.7): the model is only
    # identifiable from many impressions, and a handful of skips must not zero a position.
    theta_prior = 1.0 / np.arange(1, n_positions + 1, dtype=np.float64) ** 0.7
    theta = theta_prior.copy()
    alpha = np.full(n_pairs, 0.2)
    if start is not None and len(start[0]) == n_positions:
        theta = start[0].copy()
        known = min(len(start[1]), n_pairs)
        alpha[:known] = start[1][:known]
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
        previous = alpha
        alpha = np.clip(
            (attracted_per_pair + prior_strength * prior) / (per_pair + prior_strength),
            1e-4,
            1.0,
        )
        if tolerance > 0 and float(np.abs(alpha - previous).max(initial=0.0)) < tolerance:
            break
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

    The state is kept in flat typed arrays (one slot per cell, pair and query), so a publish is
    a few vectorised passes whatever the history's size: the click model is refitted over every
    cell (``em_iterations`` rounds from the start every ``full_rebuild_every`` publishes, in
    between from the previous fit until it settles, :data:`WARM_EM_TOLERANCE`), and the snapshot's
    per-query signals are read from the published arrays when a search asks for its query
    (:class:`QueryTable`), never rebuilt query by query. On 50,000 queries (500,000 cells) a
    publish went from 0.7-7.7 s of Python (the per-query mappings rebuilt) to tens of ms
    (``benchmarks/README.md``, issue 17): a refresh no longer holds the interpreter long enough
    to show in the searches' tail latency.

    Args:
        config: Settings.
        full_rebuild_every: Publishes between full-length fits of the click model.

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
        self.clock = DecayClock(self.config.half_life_days * DAY_S)
        self.snapshot = BehaviourSnapshot()
        # Queries, in order of first sight: index, name, searches, shoppers, and the pairs of
        # each (append-only, so a published snapshot reads them up to its own counts).
        self._queries: dict[str, int] = {}
        self._query_names: list[str] = []
        self._query_pairs: list[list[int]] = []
        self._searches = array("d")
        self._query_shoppers = array("q")
        # (query, product) pairs: index, product, outcomes.
        self._pairs: dict[tuple[str, str], int] = {}
        self._pair_product: list[str] = []
        self._pair_clicks = array("d")
        self._pair_carts = array("d")
        self._pair_purchases = array("d")
        self._pair_shoppers = array("q")
        self._pair_viewers = array("q")
        # Click-model cells: (pair, position) -> index; impressions and clicks per cell.
        self._cells: dict[tuple[int, int], int] = {}
        self._cell_pair = array("q")
        self._cell_position = array("q")
        self._cell_impressions = array("d")
        self._cell_clicks = array("d")
        self._fit: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None
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

    def _query(self, query: str) -> int:
        index = self._queries.get(query)
        if index is None:
            index = self._queries[query] = len(self._query_names)
            self._query_names.append(query)
            self._query_pairs.append([])
            self._searches.append(0.0)
            self._query_shoppers.append(0)
        return index

    def _pair(self, query: str, product_id: str) -> int:
        key = (query, product_id)
        index = self._pairs.get(key)
        if index is None:
            index = self._pairs[key] = len(self._pair_product)
            self._pair_product.append(product_id)
            self._query_pairs[self._query(query)].append(index)
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
            index = self._query(query)
            if counted:
                self._searches[index] += w
                self._query_shoppers[index] += 1
            if event.query_id is not None:
                slim = dataclasses.replace(event, results=None, variants=None)
                self._last_search[event.session_id] = (slim, w, counted)
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
        index = self._query(earlier)
        self._searches[index] = max(0.0, self._searches[index] - last[1])
        self._query_shoppers[index] = max(0, self._query_shoppers[index] - 1)

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
            full: Fit the click model for ``em_iterations`` rounds from the start; False
                starts from the previous fit and stops once it settles
                (:data:`WARM_EM_TOLERANCE`; a few more events move it little).
        """
        cfg = self.config
        n_pairs = len(self._pair_product)
        n_queries = len(self._query_names)
        qd = _copy(self._cell_pair, np.int64)
        position = _copy(self._cell_position, np.int64)
        impressions = _copy(self._cell_impressions, np.float64)
        clicks = _copy(self._cell_clicks, np.float64)
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
            start=None if full else self._fit,
            tolerance=0.0 if full or self._fit is None else WARM_EM_TOLERANCE,
        )
        self._fit = (theta, alpha)
        examinations = np.bincount(qd, impressions * theta[position], n_pairs)
        shown = np.bincount(qd, impressions, n_pairs)
        pair_clicks = _copy(self._pair_clicks, np.float64)
        carts = _copy(self._pair_carts, np.float64)
        purchases = _copy(self._pair_purchases, np.float64)
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
        searches = _copy(self._searches, np.float64)
        shoppers = _copy(self._query_shoppers, np.int64)
        # A query counts as searched (suggestions) only once several shoppers searched it.
        searches[shoppers < cfg.min_shoppers] = 0.0
        searched = np.flatnonzero(searches > 0)
        table = QueryTable(
            index=self._queries,
            names=self._query_names,
            pairs=self._query_pairs,
            pair_product=self._pair_product,
            n_queries=n_queries,
            n_pairs=n_pairs,
            columns=np.stack(
                (
                    shown,
                    examinations,
                    pair_clicks,
                    carts,
                    purchases,
                    alpha,
                    cart_rate,
                    purchase_rate,
                    utility,
                )
            )
            if n_pairs
            else np.zeros((9, 0)),
            pair_shoppers=_copy(self._pair_shoppers, np.int64),
            pair_viewers=_copy(self._pair_viewers, np.int64),
            searches=searches,
            shoppers=shoppers,
            prior_utility=prior_utility,
        )
        scale = self.clock.scale(now)
        # A product is popular once several shoppers chose or viewed it, not on one's say.
        popularity = {
            pid: w * scale
            for pid, w in self._popularity.items()
            if self._product_shoppers.get(pid, 0) >= cfg.min_shoppers
        }
        top = float(theta[0]) if len(theta) and theta[0] > 0 else 1.0
        return BehaviourSnapshot(
            queries=table,
            popularity=MappingProxyType(popularity),
            position_bias=tuple(float(t / top) for t in theta),
            last_seq=self._last_seq,
            built_at=now,
            min_shoppers=cfg.min_shoppers,
            demote_min_shoppers=cfg.demote_min_shoppers,
            searched=MappingProxyType(
                {self._query_names[i]: float(searches[i]) for i in searched.tolist()}
            ),
        )


#: Between full fits, the click model starts from the previous fit and stops once no
#: attractiveness moves by more than this in a round (a refresh that added a few events to a
#: large history stops after a round or two).
WARM_EM_TOLERANCE = 1e-3


def _copy(values: array[Any], dtype: type[np.generic]) -> npt.NDArray[Any]:
    """A numpy copy of a typed array (the buffer view is released at once, so the array can
    grow again)."""
    if not len(values):
        return np.zeros(0, dtype=dtype)
    view = memoryview(values)
    try:
        return np.array(view, dtype=dtype)
    finally:
        view.release()


class QueryTable(Mapping[str, QuerySignals]):
    """The per-query signals of one published snapshot, read from its arrays on demand.

    Immutable as far as readers can tell: the aggregator only appends to the index, names and
    pair lists it shares with the table, and the table reads them up to the counts it was
    published with; every number is a copy taken at publish.

    Args:
        index: Normalised query -> its position (shared, append-only).
        names: Queries by position (shared, append-only).
        pairs: Pair indices of each query (shared, append-only lists).
        pair_product: Product id of each pair (shared, append-only).
        n_queries: Queries known at publish.
        n_pairs: Pairs known at publish.
        columns: Per pair, rows: impressions, examinations, clicks, carts, purchases,
            click rate, cart rate, purchase rate, utility.
        pair_shoppers: Distinct shoppers who chose each pair's product.
        pair_viewers: Distinct shoppers shown each pair's product.
        searches: Searches of each query (0 below ``min_shoppers``).
        shoppers: Distinct shoppers who searched each query.
        prior_utility: Utility of a product without evidence.
    """

    def __init__(
        self,
        *,
        index: Mapping[str, int],
        names: Sequence[str],
        pairs: Sequence[Sequence[int]],
        pair_product: Sequence[str],
        n_queries: int,
        n_pairs: int,
        columns: npt.NDArray[np.float64],
        pair_shoppers: npt.NDArray[np.int64],
        pair_viewers: npt.NDArray[np.int64],
        searches: npt.NDArray[np.float64],
        shoppers: npt.NDArray[np.int64],
        prior_utility: float,
    ) -> None:
        self._index = index
        self._names = names
        self._pairs = pairs
        self._pair_product = pair_product
        self._n_queries = n_queries
        self._n_pairs = n_pairs
        self._columns = columns
        self._pair_shoppers = pair_shoppers
        self._pair_viewers = pair_viewers
        self._searches = searches
        self._shoppers = shoppers
        self.prior_utility = prior_utility

    def __getitem__(self, query: str) -> QuerySignals:
        i = self._index.get(query)
        if i is None or i >= self._n_queries:
            raise KeyError(query)
        rows = [p for p in self._pairs[i] if p < self._n_pairs]
        products: dict[str, ProductSignals] = {}
        if rows:
            values = self._columns[:, rows].T.tolist()
            shoppers = self._pair_shoppers[rows].tolist()
            viewers = self._pair_viewers[rows].tolist()
            for row, pair, chose, shown in zip(values, rows, shoppers, viewers, strict=True):
                impressions, examinations, clicks, carts, purchases = row[:5]
                click_rate, cart_rate, purchase_rate, utility = row[5:]
                products[self._pair_product[pair]] = ProductSignals(
                    impressions=impressions,
                    examinations=examinations,
                    clicks=clicks,
                    carts=carts,
                    purchases=purchases,
                    click_rate=click_rate,
                    cart_rate=cart_rate,
                    purchase_rate=purchase_rate,
                    utility=utility,
                    shoppers=chose,
                    viewers=shown,
                )
        return QuerySignals(
            MappingProxyType(products),
            self.prior_utility,
            float(self._searches[i]),
            int(self._shoppers[i]),
        )

    def __contains__(self, query: object) -> bool:
        i = self._index.get(query) if isinstance(query, str) else None
        return i is not None and i < self._n_queries

    def __iter__(self) -> Iterator[str]:
        return iter(self._names[: self._n_queries])

    def __len__(self) -> int:
        return self._n_queries


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
