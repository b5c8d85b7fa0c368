"""The FastAPI application: lifespan, middleware, error mapping and routers."""

from __future__ import annotations

import gc
import logging
import re
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import Depends, FastAPI, Request, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import __version__
from api.deps import serving_weights
from api.docs import install_docs
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
from api.security import build_security, require_admin_key, require_search_key
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
from search.snapshot import last_good_path, record_last_good, same_snapshot
from search.types import SearchRequest

if TYPE_CHECKING:
    from search.behaviour import SignalsRefresher

logger = logging.getLogger("productsearch.api")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


#: Engines opened from the last good snapshot instead of the configured one -> the warning
#: the service shows (in logs and ``/health``) while it serves them.
_FALLBACKS: weakref.WeakKeyDictionary[SearchEngine, str] = weakref.WeakKeyDictionary()


def open_engine(settings: Settings, *, last_good: bool = True) -> SearchEngine:
    """Open the snapshot the settings name, as the service and the CLI serve it.

    A restart must not turn a bad rebuild (which ``/admin/snapshot/reload`` refuses) into an
    outage: when the configured snapshot fails its checks, the last snapshot this service
    verified and served (kept beside it by :func:`search.snapshot.record_last_good`) is opened
    instead, with an error in the logs, and the service reports ``"degraded": true`` and the
    reason in ``/health`` until a good snapshot is reloaded.

    Args:
        settings: Service settings; ``index_dir`` and ``text_embedder`` are used.
        last_good: Fall back to the last good snapshot (False: a reload, where the serving
            engine stays instead).

    Returns:
        A ready engine (over the configured snapshot, or over the last good one).

    Raises:
        SnapshotError: No snapshot is configured, or it is missing, corrupt or incompatible
            and no good one is kept (the message gives both reasons).
    """
    from models.runtime import limit_cpu_threads

    limit_cpu_threads(settings.model_threads)
    if settings.index_dir is None:
        raise SnapshotError(
            "no index snapshot configured: set PRODUCTSEARCH_INDEX_DIR (or pass --index)"
        )
    try:
        return _open(settings, settings.index_dir)
    except SnapshotError as exc:
        fallback = last_good_path(settings.index_dir)
        if not last_good or not fallback.is_dir():
            raise
        reason = str(exc)
    try:
        engine = _open(settings, fallback)
    except SnapshotError as exc:
        raise SnapshotError(
            f"{reason}; the last good snapshot {fallback} fails too: {exc}"
        ) from exc
    warning = (
        f"serving the last good snapshot {engine.manifest.snapshot_id} ({fallback}) because "
        f"{settings.index_dir} cannot be served: {reason}. Rebuild it and POST "
        "/admin/snapshot/reload"
    )
    logger.error("DEGRADED: %s", warning)
    _FALLBACKS[engine] = warning
    return engine


def engine_config(settings: Settings) -> EngineConfig:
    """The query-time settings every engine the service opens is given (start-up, reloads and
    catalogue changes alike)."""
    return EngineConfig(
        max_k=settings.max_k,
        currency=settings.currency,
        currency_rates=settings.currency_rates,
    )


def _open(settings: Settings, path: Path) -> SearchEngine:
    return SearchEngine.open(
        path,
        use_semantic=settings.text_embedder != "none",
        config=engine_config(settings),
    )


@contextmanager
def loading_off_gc() -> Iterator[None]:
    """Load a new engine into a serving process without stopping the world for it.

    Loading a snapshot allocates hundreds of thousands of objects; with the cyclic garbage
    collector on, young collections scan them again and again and full collections walk the
    whole heap (the serving engine too), each holding the GIL: on 20,000 products opening took
    3.6-7.9 s with stalls of 280-440 ms for every request, against 2.0-2.7 s and stalls under
    100 ms with it paused. Afterwards the new objects are moved straight into the oldest
    generation (``gc.freeze`` then ``gc.unfreeze``: two list splices, no scan), so they do not
    count towards the next full collection either; garbage of the replaced engine is collected
    by the next regular full collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def warm_up_engine(engine: SearchEngine) -> None:
    """Pay what a first request would: build the suggester and run one real query (query
    embedding, retrieval, the learned ranker, facets) and one suggestion.

    The first inference of a model allocates and compiles (a second or more with torch), and
    searches arriving meanwhile queue behind it until they time out (19 answered 503 right
    after a restart). ``/ready`` answers 200 only once this returned; a swapped-in snapshot is
    warmed before it serves.
    """
    suggester = engine.suggester
    products = engine.store.products
    text = products[0].title if len(products) else "warm up"
    engine.search(SearchRequest(text=text, k=10, facets=tuple(engine.facet_names()[:2])))
    engine.search(SearchRequest(text=" ".join(text.split()[:1]), k=10, as_you_type=True))
    suggester.suggest(text[:3])


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
        app.state.ready = False
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
        # Warmed in a thread: start-up waits for it up to ``ready_wait_s``; a longer warm-up
        # goes on while the server listens, /health (liveness) answers and /ready says 503
        # until the first real query has run.
        warmer = threading.Thread(
            target=_warm_then_ready, args=(app, app.state.engine), name="warm-up", daemon=True
        )
        warmer.start()
        if settings.ready_wait_s > 0:
            await anyio.to_thread.run_sync(warmer.join, settings.ready_wait_s)
        # Where the keys are, whether search is open, and a loud warning without a secret.
        for level, line in app.state.security.startup_report():
            logger.log(level, line)
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
            warmer.join(timeout=30)
            refresher = getattr(app.state, "signals_refresher", None)
            if refresher is not None:
                refresher.stop()
                app.state.signals_refresher = None
            recorder = getattr(app.state, "impressions", None)
            if recorder is not None:  # writes the search records still queued
                recorder.stop()
                app.state.impressions = None
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
        # FastAPI's pages load from a CDN: api.docs serves them from the installed package.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.state.settings = settings
    app.state.engine = None
    app.state.security = build_security(settings)
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
    # Per route: posting events needs a search key, erasure and analytics an admin key.
    app.include_router(events.router)
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
    app.state.snapshot_warning = _FALLBACKS.get(engine)
    if app.state.snapshot_warning is None:
        _keep_as_last_good(settings, engine)
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
    recorder = getattr(app.state, "impressions", None)
    if recorder is None or recorder.store is not store:
        from search.impressions import ImpressionRecorder

        # Every search answer is recorded (query_id, what it showed) in the background.
        recorder = ImpressionRecorder(store, flush_s=settings.impressions_flush_s)
        recorder.start()
        app.state.impressions = recorder
    behaviour = BehaviourAggregator(
        BehaviourConfig(
            half_life_days=settings.behaviour_half_life_days,
            min_shoppers=settings.behaviour_min_shoppers,
            demote_min_shoppers=settings.behaviour_demote_min_shoppers,
            max_choices_per_query=settings.behaviour_max_choices_per_query,
        )
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


def _warm_then_ready(app: FastAPI, engine: SearchEngine | None) -> None:
    try:
        if engine is not None:
            warm_up_engine(engine)
    except Exception:
        # A query that fails here fails for shoppers too: say so, and stay not ready.
        logger.exception("warm-up query failed; /ready stays 503")
        return
    app.state.ready = True
    logger.info("warm: first query answered, ready")


def _keep_as_last_good(settings: Settings, engine: SearchEngine) -> None:
    """Record the configured snapshot, now verified and served, as the last good one."""
    snapshot_dir = getattr(engine, "snapshot_dir", None)
    if settings.index_dir is None or snapshot_dir is None:
        return
    try:
        if Path(snapshot_dir).resolve() != Path(settings.index_dir).resolve():
            return
        if same_snapshot(snapshot_dir, last_good_path(snapshot_dir)):
            return
        record_last_good(snapshot_dir, engine.manifest)
    except OSError as exc:  # a read-only snapshot folder: serving matters more
        logger.warning("could not keep %s as the last good snapshot: %s", snapshot_dir, exc)


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
