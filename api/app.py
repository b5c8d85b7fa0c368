"""The FastAPI application: lifespan, middleware, error mapping and routers."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import Depends, FastAPI, Request, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import __version__
from api.deps import serving_weights
from api.limits import install_limits
from api.metrics import install_metrics
from api.routes import (
    admin,
    catalogue,
    events,
    health,
    pages,
    photos,
    products,
    reports,
    search,
    suggest,
    voice,
)
from api.security import KeyStore, Security, require_admin_key, require_search_key
from api.settings import Settings
from models.runtime import release_free_memory
from search.config_store import ConfigStore, apply_ranking_weights
from search.engine import EngineConfig, SearchEngine
from search.errors import (
    EventStoreUnavailableError,
    InvalidRequestError,
    ProductNotFoundError,
    SnapshotError,
)
from search.protocols import Reranker
from search.rules import RankingWeights

if TYPE_CHECKING:
    from search.behaviour import SignalsRefresher

logger = logging.getLogger("productsearch.api")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def open_engine(settings: Settings) -> SearchEngine:
    """Open the snapshot the settings name, as the service and the CLI serve it.

    Args:
        settings: Service settings; ``index_dir`` and ``text_embedder`` are used.

    Returns:
        A ready engine.

    Raises:
        SnapshotError: No snapshot is configured, or it is missing, corrupt or incompatible.
    """
    from models.runtime import limit_cpu_threads

    limit_cpu_threads(settings.model_threads)
    if settings.index_dir is None:
        raise SnapshotError(
            "no index snapshot configured: set PRODUCTSEARCH_INDEX_DIR (or pass --index)"
        )
    return SearchEngine.open(
        settings.index_dir,
        use_semantic=settings.text_embedder != "none",
        config=EngineConfig(max_k=settings.max_k),
    )


def create_app(settings: Settings | None = None, engine: SearchEngine | None = None) -> FastAPI:
    """Build the application.

    Args:
        settings: Service settings; read from the environment when None.
        engine: An engine to serve instead of opening ``settings.index_dir`` at start-up
            (tests, embedding the service in another process).

    Returns:
        The application. The snapshot is opened when its lifespan starts, and a snapshot that
        fails its checks makes start-up fail.
    """
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The pool sync handlers run in: a few threads per core, not anyio's 40.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        if engine is not None:
            serve_engine(app, engine)
        else:
            try:
                serve_engine(app, open_engine(settings))
            except SnapshotError as exc:
                logger.error(
                    "refusing to start: index snapshot %s cannot be served: %s",
                    settings.index_dir,
                    exc,
                )
                raise
        warning = app.state.security.startup_warning()
        if warning:
            logger.warning(warning)
        manifest = app.state.engine.manifest
        logger.info(
            "serving snapshot %s (format %d, %d products)",
            manifest.snapshot_id,
            manifest.format_version,
            len(app.state.engine),
        )
        try:
            yield
        finally:
            refresher = getattr(app.state, "signals_refresher", None)
            if refresher is not None:
                refresher.stop()
                app.state.signals_refresher = None
            store = getattr(app.state, "event_store", None)
            if store is not None:
                store.close()
                app.state.event_store = None
            app.state.engine = None

    app = FastAPI(
        title="Product search",
        summary="Hybrid lexical, typo-tolerant, phonetic and semantic product search.",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = None
    secret = settings.keys_secret.get_secret_value() if settings.keys_secret else None
    app.state.security = Security(KeyStore(settings.keys_db or ":memory:", secret=secret))
    app.state.config_store = ConfigStore(settings.merch_db or ":memory:")
    app.state.config_version = -1
    # GET /admin/experiments/{id}/report counts from the event store (None with events off).
    app.state.experiment_counts = events.experiment_counts_source(app)
    install_limits(
        app,
        settings.max_body_bytes,
        settings.search_timeout_s,
        max_query_bytes=settings.max_query_bytes,
    )

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID_HEADER],
        )
    app.add_middleware(RequestIdMiddleware)
    install_metrics(app)

    app.add_exception_handler(InvalidRequestError, _invalid_request_handler)
    app.add_exception_handler(ProductNotFoundError, _product_not_found_handler)
    app.add_exception_handler(EventStoreUnavailableError, events.store_unavailable_handler)

    searcher = [Depends(require_search_key)]
    app.include_router(search.router, dependencies=searcher)
    app.include_router(suggest.router, dependencies=searcher)
    app.include_router(photos.router)
    app.include_router(products.router, dependencies=searcher)
    app.include_router(health.router)
    app.include_router(reports.router, dependencies=[Depends(require_admin_key)])
    app.include_router(events.router, dependencies=searcher)
    app.include_router(admin.router)
    app.include_router(catalogue.router)
    app.include_router(voice.router, dependencies=searcher)
    app.include_router(pages.router)
    return app


def serve_engine(app: FastAPI, engine: SearchEngine) -> None:
    """Put ``engine`` into service: at start-up, and to swap to a new snapshot with no downtime.

    With events on, the behavioural signals and shopper profiles are (re)built for the engine's
    products, kept fresh in the background, and the behaviour and personalisation re-rankers
    are added to it. Everything is prepared before the one assignment that makes it serve, so
    requests in flight finish on the engine they started with and none sees a half-set-up one.
    ``events_db = none`` serves the engine as it is.
    """
    settings: Settings = app.state.settings
    if isinstance(engine, SearchEngine):
        _ = engine.suggester  # built now (seconds on a large catalogue), not on a first keystroke
        # The passes over every title filled caches and freed much more than they kept: on a
        # million products this returns ~0.3 GB of RSS (benchmarks/scale.py service-probe).
        engine.analyzer.clear_cache()
        release_free_memory()
    if settings.events_db.strip().lower() in ("", "none"):
        app.state.base_engine = engine
        apply_merchandising(app)
        return
    from search.behaviour import BehaviourAggregator, BehaviourConfig, BehaviourReranker
    from search.behaviour import SignalsRefresher as Refresher
    from search.events import open_event_store
    from search.personal import Catalogue, PersonalisationReranker, ProfileAggregator

    store = getattr(app.state, "event_store", None)
    if store is None:
        store = open_event_store(settings.events_db, synchronous=settings.events_synchronous)
        app.state.event_store = store
    behaviour = BehaviourAggregator(
        BehaviourConfig(half_life_days=settings.behaviour_half_life_days)
    )
    catalogue = Catalogue.from_store(engine.store)
    profiles = ProfileAggregator(catalogue)
    refresher = Refresher(
        store,
        [behaviour, profiles],
        interval_s=settings.behaviour_refresh_s,
        retention_days=settings.events_retention_days,
    )
    refresher.refresh()
    # Both re-rankers are always built, at the settings' strengths; the merchandising weights
    # (apply_merchandising) set their strengths at run time and leave out those at 0.
    rerankers: list[Reranker] = list(engine.rerankers)
    rerankers.append(
        BehaviourReranker(behaviour, engine.store.ids, weight=settings.behaviour_weight)
    )
    rerankers.append(
        PersonalisationReranker(profiles, catalogue, strength=settings.personalisation_strength)
    )
    serving = engine.with_rerankers(rerankers)
    old: SignalsRefresher | None = getattr(app.state, "signals_refresher", None)
    refresher.start()
    app.state.signals_refresher = refresher
    app.state.behaviour = behaviour
    app.state.profiles = profiles
    app.state.base_engine = serving
    apply_merchandising(app)
    if old is not None:
        old.stop()
    logger.info("events in %s; behaviour and personalisation on", settings.events_db)


_MERCH_LOCK = threading.Lock()


def apply_merchandising(app: FastAPI) -> SearchEngine:
    """Serve the base engine with the current merchandising version: its ranking weights and
    its rules (applied last). Called at start-up, on a snapshot swap, and by the engine
    dependency when a newer version was saved (on this replica or another sharing the store).

    Returns:
        The engine now serving.
    """
    with _MERCH_LOCK:
        base: SearchEngine = app.state.base_engine
        store: ConfigStore | None = getattr(app.state, "config_store", None)
        if store is None:
            app.state.engine = base
            app.state.config_version = 0
            return base
        version = store.current()
        weights = serving_weights(app.state.settings, version)
        # The defaults are what the base engine was built with (settings defaults included).
        engine = base if weights == RankingWeights() else apply_ranking_weights(base, weights)
        if version.rules:
            engine = engine.with_rules(version.rule_set())
        app.state.engine = engine
        app.state.config_version = version.version
        if version.version:
            logger.info("serving merchandising version %d", version.version)
        return engine


async def _invalid_request_handler(request: Request, exc: Exception) -> JSONResponse:
    # Same shape as FastAPI's own RequestValidationError responses, so clients parse one format.
    assert isinstance(exc, InvalidRequestError)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={
            "detail": [{"loc": ["query", exc.field], "msg": exc.message, "type": "value_error"}]
        },
    )


async def _product_not_found_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProductNotFoundError)
    return JSONResponse(
        status_code=status.HTTP_404_NOT_FOUND,
        content={"detail": f"no product with id {exc.product_id!r}"},
    )


class RequestIdMiddleware:
    """Tags every response with ``X-Request-ID``: the caller's when well-formed, else a new one.

    The id is also left in ``request.state.request_id`` for handlers and logs.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            # Echo only ids that are safe to put in a header and a log line.
            return text if _REQUEST_ID_PATTERN.match(text) else None
    return None
