"""Shopper profiles learnt from events: :class:`ProfileAggregator` folds each event into the
taste of its user and of its session, for :class:`events.signals.SignalsRefresher`, and publishes
the :class:`search.rank.personal.ProfileSnapshot` that the personalisation re-ranker reads.

Interactions count by what they say about a taste (:data:`EVENT_WEIGHTS`: a purchase more than
a view) and fade with a half-life; segments (bargain hunter, premium buyer, brand loyal, app
shopper, night owl) are derived when a profile is published.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from events.signals import DAY_S, DecayClock
from events.store import Event, EventType, StoredEvent
from search.rank.personal import PRICE_BANDS, Catalogue, Profile, ProfileSnapshot, Segment

EVENT_WEIGHTS: Mapping[EventType, float] = MappingProxyType(
    {
        EventType.VIEW: 1.0,
        EventType.CLICK: 2.0,
        EventType.ADD_TO_CART: 4.0,
        EventType.PURCHASE: 6.0,
    }
)
"""How much each kind of interaction says about a shopper's taste."""


@dataclass
class _Taste:
    """Mutable profile state (refresher thread only)."""

    user_id: str | None = None
    brands: dict[str, float] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)
    colours: dict[str, float] = field(default_factory=dict)
    bands: dict[int, float] = field(default_factory=dict)
    brand_total: float = 0.0
    category_total: float = 0.0
    colour_total: float = 0.0
    band_total: float = 0.0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    cart: dict[str, None] = field(default_factory=dict)
    channels: Counter[str] = field(default_factory=Counter)
    night: int = 0
    events: int = 0
    interactions: int = 0


class ProfileAggregator:
    """Folds events into per-user and per-session profiles (an :class:`events.signals.Aggregator`).

    Args:
        catalogue: Item features, to turn product ids into brands, categories...
        half_life_days: Age at which an interaction counts half.
        recent: Recently viewed products kept per profile.
    """

    def __init__(
        self, catalogue: Catalogue, *, half_life_days: float = 30.0, recent: int = 20
    ) -> None:
        self.catalogue = catalogue
        self.clock = DecayClock(half_life_days * DAY_S)
        self.recent = recent
        self.snapshot = ProfileSnapshot()
        self._tastes: dict[str, _Taste] = {}
        self._frozen: dict[str, Profile] = {}
        self._dirty: set[str] = set()
        # User id -> keys of the profiles tied to them (theirs and their sessions'), so an
        # erasure drops them without a pass over every profile.
        self._keys_of_user: dict[str, set[str]] = {}
        self._last_seq = 0

    def _taste(self, key: str, user_id: str | None) -> _Taste:
        taste = self._tastes.get(key)
        if taste is None:
            taste = self._tastes[key] = _Taste(user_id=user_id, recent=deque(maxlen=self.recent))
        if user_id:
            if taste.user_id is None:
                taste.user_id = user_id
            # Every user seen in a session (a shared device): erasing any of them drops it,
            # as the store deletes the whole session.
            self._keys_of_user.setdefault(user_id, set()).add(key)
        self._dirty.add(key)
        return taste

    def fold(self, events: Sequence[StoredEvent]) -> None:
        """See :class:`events.signals.Aggregator`."""
        for stored in events:
            self._last_seq = max(self._last_seq, stored.seq)
            event = stored.event
            keys = [f"session:{event.session_id}"]
            if event.user_id:
                keys.append(f"user:{event.user_id}")
            for key in keys:
                self._fold_one(self._taste(key, event.user_id), event)

    def _fold_one(self, taste: _Taste, event: Event) -> None:
        taste.events += 1
        if event.channel:
            taste.channels[event.channel] += 1
        hour = int(event.timestamp // 3600) % 24
        if hour >= 22 or hour < 6:
            taste.night += 1
        weight = EVENT_WEIGHTS.get(event.type)
        if weight is None or event.product_id is None:
            return
        product_id = event.product_id
        taste.interactions += 1
        if event.type in (EventType.VIEW, EventType.CLICK):
            if product_id in taste.recent:
                taste.recent.remove(product_id)
            taste.recent.appendleft(product_id)
        elif event.type is EventType.ADD_TO_CART:
            taste.cart[product_id] = None
        elif event.type is EventType.PURCHASE:
            taste.cart.pop(product_id, None)
        item = self.catalogue.get(product_id)
        if item is None:
            return
        w = weight * self.clock.weight(event.timestamp)
        if item.brand:
            taste.brands[item.brand] = taste.brands.get(item.brand, 0.0) + w
            taste.brand_total += w
        if item.categories:
            for c in item.categories:
                taste.categories[c] = taste.categories.get(c, 0.0) + w
            taste.category_total += w
        if item.colours:
            for c in item.colours:
                taste.colours[c] = taste.colours.get(c, 0.0) + w
            taste.colour_total += w
        if item.price_band is not None:
            taste.bands[item.price_band] = taste.bands.get(item.price_band, 0.0) + w
            taste.band_total += w

    def forget_user(self, user_id: str) -> None:
        """Drop the user's profile and those of their sessions (the sessions in which they
        signed in: a session's anonymous events before that are the user's too). Seen by
        searches at the next :meth:`publish`."""
        for key in self._keys_of_user.pop(user_id, ()):
            self._tastes.pop(key, None)
            self._frozen.pop(key, None)
            self._dirty.discard(key)

    def publish(self, now: float) -> None:
        """Freeze the profiles that changed and swap in a new snapshot."""
        for key in self._dirty:
            taste = self._tastes.get(key)
            if taste is not None:
                self._frozen[key] = _freeze(key, taste)
        self._dirty.clear()
        self.snapshot = ProfileSnapshot(MappingProxyType(dict(self._frozen)), self._last_seq)


def _shares(weights: Mapping[str, float], total: float) -> dict[str, float]:
    return {k: v / total for k, v in weights.items()} if total > 0 else {}


def _freeze(key: str, taste: _Taste) -> Profile:
    brands = _shares(taste.brands, taste.brand_total)
    bands = (
        {k: v / taste.band_total for k, v in taste.bands.items()} if taste.band_total > 0 else {}
    )
    segments: list[Segment] = []
    if taste.interactions < 3:
        segments.append(Segment.NEW)
    else:
        if bands:
            mean_band = sum(b * s for b, s in bands.items())
            if mean_band <= 1.0:
                segments.append(Segment.BARGAIN_HUNTER)
            elif mean_band >= PRICE_BANDS - 2:
                segments.append(Segment.PREMIUM_BUYER)
        if brands and max(brands.values()) >= 0.6:
            segments.append(Segment.BRAND_LOYAL)
    channel = taste.channels.most_common(1)[0][0] if taste.channels else None
    if channel == "app" and taste.channels["app"] * 2 > taste.events:
        segments.append(Segment.APP_SHOPPER)
    if taste.events >= 3 and taste.night * 2 > taste.events:
        segments.append(Segment.NIGHT_OWL)
    return Profile(
        key=key,
        brands=MappingProxyType(brands),
        categories=MappingProxyType(_shares(taste.categories, taste.category_total)),
        colours=MappingProxyType(_shares(taste.colours, taste.colour_total)),
        price_bands=MappingProxyType(bands),
        recently_viewed=tuple(taste.recent),
        cart=tuple(taste.cart),
        segments=tuple(segments),
        channel=channel,
        interactions=taste.interactions,
        user_id=taste.user_id,
    )
