"""Dependencies injected into route handlers (swap them in tests with ``dependency_overrides``)."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from api.security import ApiKey, merge_filters
from api.service import apply_merchandising
from api.settings import Settings
from merchandising.experiments import NO_ASSIGNMENT, Assignment, Experiment, assign
from merchandising.store import ConfigStore, ConfigVersion, apply_ranking_weights
from search.analysis import tokenize
from search.engine import SearchEngine
from search.errors import ProductNotFoundError
from search.suggest import Suggester
from search.types import Filters
from search.weights import RankingWeights

if TYPE_CHECKING:
    from search.index.store import ProductStore
    from search.types import Product


def get_engine(request: Request) -> SearchEngine:
    """The search engine the lifespan opened.

    Args:
        request: The current request.

    Returns:
        The engine over the serving snapshot.

    Raises:
        RuntimeError: The application was not started (no engine on ``app.state``).
    """
    engine: SearchEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise RuntimeError("no search engine on app.state: was the app started via its lifespan?")
    state = request.app.state
    store = getattr(state, "config_store", None)
    serving_version = getattr(state, "config_version", None)
    if (
        store is not None
        and serving_version is not None
        and getattr(state, "base_engine", None) is not None
        and store.current().version != serving_version
    ):
        # A merchandiser saved rules or weights (here or on another replica): serve them now.
        engine = apply_merchandising(request.app)
    return engine


def get_settings(request: Request) -> Settings:
    """The settings the application was created with.

    Args:
        request: The current request.

    Returns:
        The service settings.
    """
    settings: Settings = request.app.state.settings
    return settings


class VariantEngines:
    """The engines of the A/B test variants for one serving engine and configuration version.

    Built lazily, one per distinct set of variant weights, and dropped with the serving engine
    or version they belong to, so a search pays a hash per experiment, not an engine build.

    Args:
        serving: The serving engine (weights and rules of ``version`` applied).
        version: The configuration version it serves; its experiments are assigned.
        base: The engine before merchandising, or None (then variants start from ``serving``).
    """

    def __init__(
        self, serving: SearchEngine, version: ConfigVersion, base: SearchEngine | None
    ) -> None:
        self.serving = serving
        self.version = version
        self.base = base
        self.experiments: tuple[Experiment, ...] = tuple(
            e for e in version.experiments if e.enabled
        )
        self._engines: dict[str, SearchEngine] = {}
        self._by_identity: dict[int, SearchEngine] = {}
        self._keep: list[RankingWeights] = []
        self._lock = threading.Lock()

    def engine_for(self, weights: RankingWeights | None) -> SearchEngine:
        """The engine ranking with ``weights`` (the serving one for None), rules applied."""
        if weights is None:
            return self.serving
        # The variants' weights objects live as long as this version: look them up by identity
        # first, so a search does not compare or serialise weights.
        engine = self._by_identity.get(id(weights))
        if engine is not None:
            return engine
        with self._lock:
            if weights == self.version.weights:
                engine = self.serving
            else:
                key = repr(sorted(weights.to_dict().items()))
                engine = self._engines.get(key)
                if engine is None:
                    engine = self._build(weights)
                    self._engines[key] = engine
            self._by_identity[id(weights)] = engine
            self._keep.append(weights)  # keeps id() from being reused while cached
        return engine

    def _build(self, weights: RankingWeights) -> SearchEngine:
        if self.base is None:
            return apply_ranking_weights(self.serving, weights)
        # From the engine before merchandising, as the serving weights are applied: a variant's
        # weights (behaviour and personalisation strengths included) replace the serving
        # weights rather than add to them.
        engine = apply_ranking_weights(self.base, weights)
        return engine.with_rules(self.version.rule_set()) if self.version.rules else engine


_VARIANTS_LOCK = threading.Lock()


def variant_engines(state: Any, engine: SearchEngine) -> VariantEngines | None:
    """The :class:`VariantEngines` of ``engine`` on ``app.state`` (rebuilt when the serving
    engine or the configuration version changed), or None without a configuration store."""
    store: ConfigStore | None = getattr(state, "config_store", None)
    if store is None:
        return None
    # Keyed by the version number the serving engine was built for (``get_engine`` keeps it
    # current), so a search reads no configuration while nothing changed.
    key = (engine, getattr(state, "config_version", None))
    cached: tuple[tuple[SearchEngine, Any], VariantEngines] | None = getattr(
        state, "variant_engines", None
    )
    if cached is not None and cached[0][0] is key[0] and cached[0][1] == key[1]:
        return cached[1]
    with _VARIANTS_LOCK:
        base = getattr(state, "base_engine", None)
        # An engine other than the application's (a test override) gets variants built on it.
        built = VariantEngines(
            engine, store.current(), base if engine is getattr(state, "engine", None) else None
        )
        state.variant_engines = (key, built)
    return built


def serve_variants(
    request: HTTPConnection, engine: SearchEngine, user_id: str | None, session_id: str | None
) -> tuple[SearchEngine, Assignment]:
    """Assign a shopper to the running A/B tests and pick the engine that ranks for them.

    Args:
        request: The current request (its application holds the configuration).
        engine: The serving engine (from :func:`get_engine`).
        user_id: The signed-in shopper, or None.
        session_id: The shopper's session, or None.

    Returns:
        The engine to search with (``engine`` itself for a shopper without ids or in no
        weighted arm) and the assignment (see :func:`merchandising.experiments.assign`).
    """
    if not (user_id or session_id):
        return engine, NO_ASSIGNMENT
    variants = variant_engines(request.app.state, engine)
    if variants is None or not variants.experiments:
        return engine, NO_ASSIGNMENT
    assignment = assign(variants.experiments, user_id, session_id, variants.version.weights)
    return variants.engine_for(assignment.weights), assignment


EngineDep = Annotated[SearchEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


# --------------------------------------------------------------------------------------------
# What a key may see: its fixed filters hold on every route that reveals a product.


class _KeyView:
    """The products one filtered key may see in one store: a mask, and (built on first use)
    a suggester over their titles only with the set of their title words."""

    __slots__ = ("lock", "mask", "suggester", "words")

    def __init__(self, mask: npt.NDArray[np.bool_]) -> None:
        self.mask = mask
        self.lock = threading.Lock()
        self.suggester: Suggester | None = None
        self.words: frozenset[str] = frozenset()


# Per store (weakly: a swapped-out snapshot's views go with it), per key id. A key's filters
# never change (keys are created and revoked, not edited).
_VIEWS: weakref.WeakKeyDictionary[ProductStore, dict[str, _KeyView]] = weakref.WeakKeyDictionary()
_VIEWS_LOCK = threading.Lock()


def _fixed_filters(key: ApiKey | None) -> Filters | None:
    if key is None or key.filters is None or key.filters.is_empty:
        return None
    return key.filters


def _view(engine: SearchEngine, key: ApiKey) -> _KeyView:
    store = engine.store
    with _VIEWS_LOCK:
        views = _VIEWS.setdefault(store, {})
        view = views.get(key.id)
    if view is None:
        # The same narrowing the search routes apply (merge_filters), so a product is visible
        # here exactly when a search with this key can return it.
        mask = store.mask(merge_filters(Filters(), key.filters))
        view = _KeyView(np.ones(len(store), dtype=bool) if mask is None else mask)
        with _VIEWS_LOCK:
            view = _VIEWS.setdefault(store, {}).setdefault(key.id, view)
    return view


def visible_product(engine: SearchEngine, key: ApiKey | None, product_id: str) -> Product:
    """A product the key may see.

    A product outside the key's fixed filters is answered exactly as an unknown id, so a
    filtered key cannot learn whether it exists.

    Args:
        engine: The serving engine.
        key: The request's key (None in open mode: no filters).
        product_id: The product asked for.

    Raises:
        ProductNotFoundError: unknown id, or a product the key's filters leave out (404).
    """
    product = engine.get_product(product_id)
    if _fixed_filters(key) is None:
        return product
    assert key is not None
    if not _view(engine, key).mask[engine.store.doc_of[product.id]]:
        raise ProductNotFoundError(product_id)
    return product


def visible_suggestions(
    engine: SearchEngine, key: ApiKey | None, popular: dict[str, int] | None
) -> tuple[Suggester, dict[str, int] | None]:
    """The suggester and popular queries a key's suggestions come from.

    For a key with fixed filters: a suggester over the titles of the products it may see (built
    once per key and snapshot), and only the popular queries whose every word is a word of one
    of those titles, so no suggestion names a product the key cannot see. Otherwise the
    engine's own suggester and every popular query.

    Args:
        engine: The serving engine.
        key: The request's key.
        popular: Past queries -> searches (see ``api.routes.suggest.popular_queries``).
    """
    if _fixed_filters(key) is None:
        return engine.suggester, popular
    assert key is not None
    view = _view(engine, key)
    with view.lock:
        if view.suggester is None:
            store = engine.store
            titles = [store.products[int(doc)].title for doc in np.flatnonzero(view.mask)]
            view.words = frozenset(t.folded for title in titles for t in tokenize(title))
            view.suggester = Suggester.from_titles(titles, engine.vocabulary, engine.analyzer)
        suggester, words = view.suggester, view.words
    if popular:
        popular = {
            query: n
            for query, n in popular.items()
            if all(t.folded in words for t in tokenize(query))
        }
    return suggester, popular
