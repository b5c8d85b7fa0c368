"""Per-user ranking: what personalisation knows about products and shoppers, and the bounded
personalisation re-ranker.

A :class:`Profile` is a signed-in user's or a session's taste (anonymous shoppers count too):
time-decayed affinities to brands, categories, colours and price bands (weighted by what the
shopper did: a purchase says more than a view), recently viewed products, cart contents, the
usual channel and hours, and segments derived from them (bargain hunter, premium buyer, brand
loyal...). :mod:`events.profiles` folds events into profiles and publishes a
:class:`ProfileSnapshot`; searches read it through a :class:`ProfileSource`. A
:class:`Catalogue` gives the item features of each product, to both.

:class:`PersonalisationReranker` multiplies each relevant hit's normalised score by a factor in
``[1 - strength, 1 + strength]`` from the shopper's affinity to the product, so it reorders among
relevant results only, and never lifts a partial match above a clear exact match (all query
words in the title) that ranked above it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, SupportsIndex, overload

import numpy as np
import numpy.typing as npt

from search.analysis import fold, tokenize
from search.index.store import ProductStore, category_label, item_or_slice
from search.rank.context import (
    Effect,
    RankingContext,
    Reranked,
    effects_of,
    normalised_scores,
)
from search.types import Hit, Product
from search.understand import AnalyzedQuery, MatchKind
from search.weights import DEFAULT_WEIGHTS

PRICE_BANDS = 5


class Segment(StrEnum):
    """Shopper segments derived from behaviour."""

    NEW = "new"
    BARGAIN_HUNTER = "bargain_hunter"
    PREMIUM_BUYER = "premium_buyer"
    BRAND_LOYAL = "brand_loyal"
    APP_SHOPPER = "app_shopper"
    NIGHT_OWL = "night_owl"


@dataclass(frozen=True, slots=True)
class ItemFeatures:
    """What personalisation knows about one product.

    Attributes:
        brand: Folded brand, or None.
        categories: Folded category labels of every path prefix (``"furniture > sofas"``).
        colours: Folded colours.
        price_band: 0 (cheapest fifth of the catalogue) .. 4 (dearest), or None.
        title_words: Folded title words (for the exact-match guard).
    """

    brand: str | None
    categories: tuple[str, ...]
    colours: tuple[str, ...]
    price_band: int | None
    title_words: frozenset[str]


def price_band_edges(
    prices: Sequence[float | None] | npt.NDArray[np.float64], bands: int = PRICE_BANDS
) -> tuple[float, ...]:
    """Quantile edges splitting known prices into ``bands`` bands (``bands - 1`` edges); None
    and non-finite prices are left out."""
    if isinstance(prices, np.ndarray):
        values = prices.astype(float, copy=False)
    else:
        values = np.array([np.nan if p is None else p for p in prices], dtype=float)
    known = values[np.isfinite(values)]
    if len(known) == 0:
        return ()
    return tuple(float(x) for x in np.quantile(known, np.linspace(0, 1, bands + 1)[1:-1]))


def item_features(product: Product, edges: Sequence[float]) -> ItemFeatures:
    """Features of one product.

    Args:
        product: The product.
        edges: Price band edges from :func:`price_band_edges`.
    """
    categories = {
        fold(category_label(path[:depth]))
        for path in product.categories
        for depth in range(1, len(path) + 1)
    }
    price = product.effective_price
    band = None
    if price is not None and edges and math.isfinite(price):
        band = int(np.searchsorted(np.asarray(edges), price, side="right"))
    return ItemFeatures(
        brand=fold(product.brand).strip() if product.brand else None,
        categories=tuple(sorted(categories)),
        colours=tuple(fold(c) for c in product.colours),
        price_band=band,
        title_words=frozenset(t.folded for t in tokenize(product.title)),
    )


#: Item features kept decoded by a :class:`Catalogue` (the rest are computed when asked for).
FEATURE_CACHE_SIZE = 65_536


class _LazyFeatures(Sequence[ItemFeatures]):
    """Item features by document number, computed from the product on first use and kept in
    an LRU cache: a million products' features are never all in memory."""

    def __init__(
        self,
        products: Sequence[Product],
        edges: Sequence[float],
        brand_of: Mapping[str, str] | None,
        cache_size: int,
    ) -> None:
        self._products = products
        self._edges = edges
        self._brand_of = brand_of
        self._get = functools.lru_cache(maxsize=cache_size)(self._compute)

    def __len__(self) -> int:
        return len(self._products)

    @overload
    def __getitem__(self, index: SupportsIndex) -> ItemFeatures: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ItemFeatures]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> ItemFeatures | Sequence[ItemFeatures]:
        return item_or_slice(index, len(self), self._get)

    def _compute(self, doc: int) -> ItemFeatures:
        product = self._products[doc]
        f = item_features(product, self._edges)
        if f.brand is None and self._brand_of and product.id in self._brand_of:
            f = ItemFeatures(
                fold(self._brand_of[product.id]),
                f.categories,
                f.colours,
                f.price_band,
                f.title_words,
            )
        return f


class Catalogue:
    """Item features of every product, by id and by document number.

    Features are computed from a product when first needed and cached
    (:data:`FEATURE_CACHE_SIZE`), so the catalogue costs little memory at any size.

    Args:
        products: Products in document order.
        brand_of: Optional brand guess for products without one (e.g. the first title word
            of a catalogue that puts the brand there); None leaves them brandless.
        prices: Each product's effective price (NaN for none), when already known (a product
            store's column); None reads them from the products.
        doc_of: Product id -> document number, when already known; None builds it.
        cache_size: Item features kept computed.
    """

    def __init__(
        self,
        products: Sequence[Product],
        brand_of: Mapping[str, str] | None = None,
        *,
        prices: npt.NDArray[np.float64] | None = None,
        doc_of: Mapping[str, int] | None = None,
        cache_size: int = FEATURE_CACHE_SIZE,
    ) -> None:
        if prices is None:
            prices = np.array(
                [np.nan if p.effective_price is None else p.effective_price for p in products],
                dtype=np.float64,
            )
        edges = price_band_edges(prices)
        self.by_doc: Sequence[ItemFeatures] = _LazyFeatures(products, edges, brand_of, cache_size)
        self.doc_of: Mapping[str, int] = (
            doc_of if doc_of is not None else {p.id: i for i, p in enumerate(products)}
        )
        self.price_edges = edges

    @classmethod
    def from_store(cls, store: ProductStore) -> Catalogue:
        """The catalogue of a product store (its prices and id index, no pass over the
        products)."""
        return cls(store.products, prices=store.prices, doc_of=store.doc_of)

    def get(self, product_id: str) -> ItemFeatures | None:
        """Features of a product by id, or None when unknown."""
        doc = self.doc_of.get(product_id)
        return None if doc is None else self.by_doc[doc]


@dataclass(frozen=True, slots=True)
class Profile:
    """A shopper's (user's or session's) taste, as of its snapshot.

    Attributes:
        key: ``"user:<id>"`` or ``"session:<id>"``.
        brands: Brand -> share of the shopper's interactions (0..1).
        categories: Category label -> share.
        colours: Colour -> share.
        price_bands: Price band -> share.
        recently_viewed: Product ids, most recent first.
        cart: Product ids in the cart (added and not bought yet).
        segments: Derived segments.
        channel: The channel used most, or None.
        interactions: Product interactions folded in (not decayed).
        user_id: The user, when the profile is a session of a signed-in user or a user's.
    """

    key: str
    brands: Mapping[str, float] = field(default_factory=dict)
    categories: Mapping[str, float] = field(default_factory=dict)
    colours: Mapping[str, float] = field(default_factory=dict)
    price_bands: Mapping[int, float] = field(default_factory=dict)
    recently_viewed: tuple[str, ...] = ()
    cart: tuple[str, ...] = ()
    segments: tuple[Segment, ...] = ()
    channel: str | None = None
    interactions: int = 0
    user_id: str | None = None

    def affinity(self, item: ItemFeatures) -> tuple[float, list[str]]:
        """How well a product fits this taste, in -1..1 (0: no opinion), with reasons.

        Each component (brand, category, colour, price band) compares the product's value with
        the shopper's favourite: the share of the value over the share of the favourite.
        A product in a price band two or more away from every band the shopper used counts
        against (bargain hunters shown luxury items, and the reverse).
        """
        parts: list[tuple[float, float]] = []
        reasons: list[str] = []

        def relative(shares: Mapping[str, float], values: Sequence[str]) -> float:
            top = max(shares.values(), default=0.0)
            if top <= 0:
                return 0.0
            return max((shares.get(v, 0.0) for v in values), default=0.0) / top

        if item.brand and self.brands:
            a = relative(self.brands, [item.brand])
            parts.append((0.4, a))
            if a > 0:
                reasons.append(f"brand {item.brand} {a:.2f}")
        if item.categories and self.categories:
            a = relative(self.categories, item.categories)
            parts.append((0.3, a))
            if a > 0:
                reasons.append(f"category {a:.2f}")
        if item.colours and self.colours:
            a = relative(self.colours, item.colours)
            parts.append((0.15, a))
            if a > 0:
                reasons.append(f"colour {a:.2f}")
        if item.price_band is not None and self.price_bands:
            a = relative({str(k): v for k, v in self.price_bands.items()}, [str(item.price_band)])
            if a == 0 and min(abs(item.price_band - b) for b in self.price_bands) >= 2:
                a = -1.0
                reasons.append("outside the usual price range")
            elif a > 0:
                reasons.append(f"price band {a:.2f}")
            parts.append((0.15, a))
        if not parts:
            return 0.0, []
        total = sum(w for w, _ in parts)
        return sum(w * a for w, a in parts) / total, reasons


def segment_profile(segment: str) -> Profile | None:
    """The taste a segment stands for, for a context that names one (a campaign, a landing
    page) even without history: price bands for bargain hunters and premium buyers.

    Args:
        segment: A :class:`Segment` value.

    Returns:
        A synthetic profile, or None for segments that imply no taste.
    """
    bands: dict[int, float]
    if segment == Segment.BARGAIN_HUNTER:
        bands = {0: 0.6, 1: 0.4}
    elif segment == Segment.PREMIUM_BUYER:
        bands = {PRICE_BANDS - 1: 0.6, PRICE_BANDS - 2: 0.4}
    else:
        return None
    return Profile(
        key=f"segment:{segment}",
        price_bands=MappingProxyType(bands),
        segments=(Segment(segment),),
        interactions=1,
    )


def merge_profiles(profiles: Sequence[Profile]) -> Profile | None:
    """One taste from several (a user's history and the current session's intent), each
    counting equally; None when there are none."""
    profiles = [p for p in profiles if p.interactions > 0]
    if not profiles:
        return None
    if len(profiles) == 1:
        return profiles[0]

    def mix(maps: Sequence[Mapping[str, float]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in maps:
            for k, v in m.items():
                out[k] = out.get(k, 0.0) + v / len(maps)
        return out

    bands: dict[int, float] = {}
    for p in profiles:
        for k, v in p.price_bands.items():
            bands[k] = bands.get(k, 0.0) + v / len(profiles)
    return Profile(
        key="+".join(p.key for p in profiles),
        brands=mix([p.brands for p in profiles]),
        categories=mix([p.categories for p in profiles]),
        colours=mix([p.colours for p in profiles]),
        price_bands=bands,
        recently_viewed=tuple(dict.fromkeys(v for p in profiles for v in p.recently_viewed)),
        cart=tuple(dict.fromkeys(c for p in profiles for c in p.cart)),
        segments=tuple(dict.fromkeys(s for p in profiles for s in p.segments)),
        channel=profiles[-1].channel,
        interactions=sum(p.interactions for p in profiles),
        user_id=next((p.user_id for p in profiles if p.user_id), None),
    )


@dataclass(frozen=True, slots=True)
class ProfileSnapshot:
    """Immutable profiles as searches see them.

    Attributes:
        profiles: Key (``"user:<id>"``, ``"session:<id>"``) -> profile.
        last_seq: Last event sequence number folded in.
    """

    profiles: Mapping[str, Profile] = field(default_factory=dict)
    last_seq: int = 0

    def for_context(self, context: RankingContext) -> Profile | None:
        """The merged profile of the context's user and session, or None without one."""
        found = []
        if context.user_id:
            p = self.profiles.get(f"user:{context.user_id}")
            if p is not None:
                found.append(p)
        if context.session_id:
            p = self.profiles.get(f"session:{context.session_id}")
            if p is not None:
                found.append(p)
        return merge_profiles(found)


class ProfileSource(Protocol):
    """Anything holding a current :class:`ProfileSnapshot`."""

    @property
    def snapshot(self) -> ProfileSnapshot:
        """The current snapshot."""
        ...


@dataclass(frozen=True, slots=True)
class StaticProfiles:
    """A fixed snapshot as a :class:`ProfileSource` (benchmarks, tests)."""

    snapshot: ProfileSnapshot


def query_word_forms(query: AnalyzedQuery) -> tuple[frozenset[str], ...]:
    """Per query word (written, not derived): its folded form and its exact index words."""
    forms = []
    for word in query.words:
        if word.derived:
            continue
        exact = {fold(a.word) for a in word.alternatives if a.kind is MatchKind.EXACT}
        exact.add(fold(word.text))
        forms.append(frozenset(exact))
    return tuple(forms)


def is_exact_match(query: AnalyzedQuery, item: ItemFeatures) -> bool:
    """True when every query word (as written or its exact index word) is in the title.

    Args:
        query: The analysed query.
        item: The product's features.
    """
    forms = query_word_forms(query)
    return bool(forms) and all(f & item.title_words for f in forms)


def relative_scores(hits: Sequence[Hit]) -> npt.NDArray[np.float64]:
    """Scores relative to the best, after shifting them so the lowest is at most 0.

    Positive scores (BM25F, fusion) become ratios to the best (best 1), so a multiplicative
    factor means the same whatever their scale; lists with negative scores (a learned ranker's
    log-odds) are shifted first, their lowest hit landing on 0.
    """
    if not hits:
        return np.zeros(0)
    scores = np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits))
    if not np.all(np.isfinite(scores)):
        return normalised_scores(hits)
    low = min(0.0, float(scores.min()))
    high = float(scores.max())
    if high - low <= 1e-12:
        return normalised_scores(hits)
    return (scores - low) / (high - low)


class PersonalisationReranker:
    """Reorders relevant results by the shopper's taste, within bounds.

    For hits in the head of the list whose relative score (:func:`relative_scores`, best 1) is
    at least ``relevance_floor`` (the relevant set), the score is multiplied by ``1 + strength * affinity`` with affinity in
    -1..1, so by a factor in ``[1 - strength, 1 + strength]``. A hit that is not a clear exact
    match never passes a clear exact match that ranked above it. Other hits keep their order
    below. Without a profile (a new anonymous shopper) the list is returned unchanged; a
    segment named by the context (:func:`segment_profile`) counts as a profile.

    Args:
        source: Where the current profiles live.
        catalogue: Item features by document.
        strength: Bound of the multiplicative factor, 0..0.9 (0 turns personalisation off),
            when a request's context carries no weights (its ``personalisation`` wins).
        depth: Hits considered.
        relevance_floor: Relative score (0..1, best 1) below which a hit is not reordered.
        name: Name in explanations.

    Raises:
        ValueError: ``strength`` outside 0..0.9, depth below 1 or floor outside 0..1.
    """

    def __init__(
        self,
        source: ProfileSource,
        catalogue: Catalogue,
        *,
        strength: float = DEFAULT_WEIGHTS.personalisation,
        depth: int = 50,
        relevance_floor: float = 0.3,
        name: str = "personal",
    ) -> None:
        if not 0.0 <= strength <= 0.9:
            raise ValueError(f"strength must be between 0 and 0.9, not {strength}")
        if depth < 1:
            raise ValueError("depth must be 1 or more")
        if not 0.0 <= relevance_floor <= 1.0:
            raise ValueError("relevance_floor must be between 0 and 1")
        self.source = source
        self.catalogue = catalogue
        self.strength = strength
        self.depth = depth
        self.relevance_floor = relevance_floor
        self._name = name

    @property
    def name(self) -> str:
        """Name used in explanations."""
        return self._name

    def rerank(
        self, query: AnalyzedQuery, hits: list[Hit], context: RankingContext | None = None
    ) -> Reranked:
        """Personalise the order of ``hits`` for the context's shopper.

        Args:
            query: The query (for the exact-match guard).
            hits: Hits, best first.
            context: The shopper and the request's weights (``personalisation`` is this
                stage's strength, 0 turns it off; without weights the built strength holds);
                None or no profile leaves the hits as they are.

        Returns:
            The new order and each touched hit's effect.
        """
        if context is None or not hits:
            return Reranked(list(hits))
        strength = self.strength if context.weights is None else context.weights.personalisation
        if strength <= 0:
            return Reranked(list(hits))
        profile = self.source.snapshot.for_context(context)
        forced = segment_profile(context.segment) if context.segment else None
        if forced is not None:
            profile = merge_profiles([p for p in (profile, forced) if p is not None])
        if profile is None:
            return Reranked(list(hits))
        head, tail = hits[: self.depth], hits[self.depth :]
        base = relative_scores(head)
        eligible = [i for i in range(len(head)) if base[i] >= self.relevance_floor]
        if len(eligible) < 2:
            return Reranked(list(hits))
        forms = query_word_forms(query)
        scores: dict[int, float] = {}
        exact: dict[int, bool] = {}
        reasons: dict[int, str] = {}
        for i in eligible:
            item = self.catalogue.by_doc[head[i].doc]
            affinity, why = profile.affinity(item)
            factor = 1.0 + strength * max(-1.0, min(1.0, affinity))
            scores[i] = float(base[i]) * factor
            exact[i] = bool(forms) and all(f & item.title_words for f in forms)
            if affinity != 0:
                reasons[head[i].doc] = f"x{factor:.2f} for this shopper ({', '.join(why)})"
        order = _guarded_order(eligible, scores, exact)
        rest = [i for i in range(len(head)) if i not in scores]
        new_hits: list[Hit] = []
        previous = math.inf
        for i in order:
            # Scores stay non-increasing even where the guard kept a lower-scored exact match
            # above a boosted partial one.
            previous = min(previous, scores[i])
            new_hits.append(Hit(head[i].doc, previous, self._name))
        low = self.relevance_floor * (1.0 - strength)
        for i in rest:
            new_hits.append(Hit(head[i].doc, min(previous, float(base[i]) * low), head[i].source))
        tail_base = normalised_scores(tail)
        for h, b in zip(tail, tail_base, strict=True):
            new_hits.append(Hit(h.doc, -1.0 - (1.0 - float(b)), h.source))
        effects: dict[int, Effect] = effects_of(hits, new_hits, reasons)
        return Reranked(new_hits, effects)


def _guarded_order(
    eligible: Sequence[int], scores: Mapping[int, float], exact: Mapping[int, bool]
) -> list[int]:
    """Order by score, except that a partial match never passes an exact match that was above
    it: merge the exact and partial hits (each sorted by score), taking a partial hit only once
    every exact hit originally above it is placed."""
    exacts = sorted((i for i in eligible if exact[i]), key=lambda i: (-scores[i], i))
    partials = sorted((i for i in eligible if not exact[i]), key=lambda i: (-scores[i], i))
    placed_exact: set[int] = set()
    order: list[int] = []
    e = p = 0
    while e < len(exacts) or p < len(partials):
        if p < len(partials):
            candidate = partials[p]
            blocked = any(j < candidate and j not in placed_exact for j in exacts[e:])
            if not blocked and (e >= len(exacts) or scores[candidate] > scores[exacts[e]]):
                order.append(candidate)
                p += 1
                continue
        if e < len(exacts):
            placed_exact.add(exacts[e])
            order.append(exacts[e])
            e += 1
        else:  # pragma: no cover - a blocked partial always has an exact left to place
            order.append(partials[p])
            p += 1
    return order
