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
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import __version__
from api.docs import install_docs
from api.errors import install_error_handlers
from api.limits import SEARCH_PATHS, install_limits
from api.metrics import install_metrics
from api.routes import (
    admin,
    algolia,
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
from api.service import open_engine, release_heap, serve_engine, warm_then_ready
from api.settings import Settings
from merchandising.store import ConfigStore
from search.engine import SearchEngine
from search.errors import SnapshotError

if TYPE_CHECKING:
    pass

logger = logging.getLogger("productsearch.api")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
            target=warm_then_ready, args=(app, app.state.engine), name="warm-up", daemon=True
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
        follower = None
        if settings.workers > 1 and settings.snapshot_poll_s > 0 and settings.index_dir:
            from api.follow import SnapshotFollower

            follower = SnapshotFollower(app, settings)
            follower.start()
        try:
            yield
        finally:
            if follower is not None:
                follower.stop()
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
            release_heap()

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
        timeout_paths=(*SEARCH_PATHS, "/1/indexes/*/queries"),
    )

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # POST: the Algolia-compatible routes (a storefront's InstantSearch searches and
            # sends events from the browser). Keys travel in headers, never cookies.
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID_HEADER],
        )
    app.add_middleware(RequestIdMiddleware)
    install_metrics(app)

    install_error_handlers(app)

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
    # Storefronts on InstantSearch: search keys only (each route's StorefrontKeyDep).
    app.include_router(algolia.router)
    app.include_router(pages.router)
    return app


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
