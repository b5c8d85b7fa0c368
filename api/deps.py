"""Dependencies injected into route handlers (swap them in tests with ``dependency_overrides``)."""

from __future__ import annotations

import threading
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from api.security import ApiKey, merge_filters
from api.service import apply_merchandising
from api.settings import Settings
from merchandising.experiments import NO_ASSIGNMENT, Assignment, assign
from merchandising.store import ConfigVersion
from search.analysis import tokenize
from search.engine import SearchEngine
from search.errors import ProductNotFoundError
from search.suggest import Suggester
from search.tuning import Tuning
from search.types import Filters

if TYPE_CHECKING:
    from search.index.store import ProductStore
    from search.types import Product


async def get_engine(request: Request) -> SearchEngine:
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
    return _refresh_merchandising(request.app) or engine


def _refresh_merchandising(app: Any) -> SearchEngine | None:
    """Serve the newest merchandising version when one was saved since (here or on another
    replica sharing the store); the serving engine then, or None when nothing is set up."""
    state = app.state
    store = getattr(state, "config_store", None)
    serving_version = getattr(state, "config_version", None)
    if (
        store is not None
        and serving_version is not None
        and getattr(state, "base_engine", None) is not None
        and store.current().version != serving_version
    ):
        # A merchandiser saved rules or weights (here or on another replica): serve them now.
        apply_merchandising(app)
    engine: SearchEngine | None = getattr(state, "engine", None)
    return engine


async def get_settings(request: Request) -> Settings:
    """The settings the application was created with.

    Args:
        request: The current request.

    Returns:
        The service settings.
    """
    settings: Settings = request.app.state.settings
    return settings


def serve_variants(
    request: HTTPConnection, engine: SearchEngine, user_id: str | None, session_id: str | None
) -> tuple[Tuning, Assignment]:
    """Assign a shopper to the running A/B tests and decide the tuning their search ranks with.

    The serving tuning (the current version's weights and rules, resolved by
    :func:`api.service.apply_merchandising`) with, for a shopper in a weighted arm, that arm's
    weights instead: a value handed to :meth:`search.engine.SearchEngine.search`, so an arm
    costs no engine and no memory of its own.

    Args:
        request: The current request (its application holds the configuration).
        engine: The serving engine (from :func:`get_engine`).
        user_id: The signed-in shopper, or None.
        session_id: The shopper's session, or None.

    Returns:
        The tuning to search with and the assignment (see
        :func:`merchandising.experiments.assign`).
    """
    if request.scope["type"] == "websocket":  # HTTP routes refreshed it in get_engine
        _refresh_merchandising(request.app)
    serving: tuple[SearchEngine, ConfigVersion, Tuning] | None = getattr(
        request.app.state, "serving", None
    )
    if serving is None or serving[0] is not engine:
        # An engine other than the application's (a test override): its own tuning.
        return engine.tuning, NO_ASSIGNMENT
    _, version, tuning = serving
    if not (user_id or session_id) or not version.experiments:
        return tuning, NO_ASSIGNMENT
    running = [e for e in version.experiments if e.enabled]
    assignment = assign(running, user_id, session_id, version.weights)
    if assignment.weights is None or assignment.weights == version.weights:
        return tuning, assignment
    # The arm's weights replace the serving ones (behaviour and personalisation included).
    return replace(tuning, weights=assignment.weights), assignment


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
            products = [store.products[int(doc)] for doc in np.flatnonzero(view.mask)]
            view.words = frozenset(t.folded for p in products for t in tokenize(p.title))
            view.suggester = Suggester.from_products(products, engine.vocabulary, engine.analyzer)
        suggester, words = view.suggester, view.words
    if popular:
        popular = {
            query: n
            for query, n in popular.items()
            if all(t.folded in words for t in tokenize(query))
        }
    return suggester, popular
