"""Observability: Prometheus metrics, ``GET /metrics``, and JSON logs that carry the request id.

:func:`install_metrics` adds a middleware that times every HTTP request into a histogram labelled
by method, route template (``/products/{product_id}``, never the raw path, so label values stay
few) and status, counts requests in flight and writes one structured access-log line per request.
The serving snapshot is read from ``app.state.engine`` at each scrape, so a snapshot swap shows
up without a call. Event lag and cache hits are pushed through :class:`Metrics` methods.

Each application gets its own :class:`prometheus_client.CollectorRegistry` (tests create many
applications in one process; the global registry would refuse the second one's metrics).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    multiprocess,
    platform_collector,
    process_collector,
    values,
)
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.index.snapshot import Manifest

NAMESPACE = "productsearch"

#: Latency buckets (seconds): as-you-type searches answer in milliseconds, rebuilds take minutes.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

#: Route label of requests no route matched (404s of any path: one label value, not one each).
UNMATCHED_ROUTE = "<unmatched>"

access_logger = logging.getLogger("productsearch.access")

# The ASGI scope of the request being handled, so log records made anywhere while handling it
# (threadpool included: Starlette copies the context) can carry its request id. The scope rather
# than the id: RequestIdMiddleware may run inside this middleware and set the id later.
_current_scope: ContextVar[Scope | None] = ContextVar("productsearch_scope", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled (``X-Request-ID``), or None outside a request."""
    scope = _current_scope.get()
    if scope is None:
        return None
    state = scope.get("state")
    request_id = state.get("request_id") if isinstance(state, Mapping) else None
    return str(request_id) if request_id is not None else None


class Metrics:
    """The service's Prometheus metrics, in their own registry.

    Args:
        registry: Where to register them; a new registry (with process, platform and garbage
            collector metrics) when None.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, multiprocess_dir: Path | None = None
    ) -> None:
        # Several worker processes (api/server.py) each write their values to files in this
        # folder, and a scrape of any worker adds every worker's up (prometheus_client's
        # multiprocess mode): without it, /metrics counted the one worker that answered.
        self.multiprocess_dir = str(multiprocess_dir) if multiprocess_dir else None
        if self.multiprocess_dir:
            values.ValueClass = values.get_value_class()  # the env var may postdate the import
        if registry is None:
            registry = CollectorRegistry()
            if not self.multiprocess_dir:  # these describe one process
                process_collector.ProcessCollector(registry=registry)
                platform_collector.PlatformCollector(registry=registry)
                gc_collector.GCCollector(registry=registry)
        self.registry = registry
        self.request_duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being handled.",
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.snapshot_info = Gauge(
            "snapshot_info",
            "The serving index snapshot (always 1; the labels say which).",
            ["snapshot_id", "format_version", "created_at"],
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.snapshot_products = Gauge(
            "snapshot_products",
            "Products in the serving snapshot.",
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.snapshot_created = Gauge(
            "snapshot_created_timestamp_seconds",
            "Build time of the serving snapshot (Unix time; alert on its age).",
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.event_lag = Gauge(
            "event_lag_seconds",
            "Age of the newest shopper event folded into behavioural signals.",
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.cache_requests = Counter(
            "cache_requests",
            "Cache look-ups by cache and result (hit or miss).",
            ["cache", "result"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._snapshot_labels: tuple[str, str, str] | None = None
        self._cache_counts: dict[str, tuple[int, int, int]] = {}

    def set_cache_counts(self, cache: str, owner: object, hits: int, misses: int) -> None:
        """Bring a cache's counters up to the totals its owner keeps (read at each scrape).

        Args:
            cache: The cache's name.
            owner: The object counting (a new one, e.g. after a model reload, starts at 0).
            hits: Its hits so far.
            misses: Its misses so far.
        """
        last_owner, last_hits, last_misses = self._cache_counts.get(cache, (0, 0, 0))
        if last_owner != id(owner) or hits < last_hits or misses < last_misses:
            last_hits = last_misses = 0
        if hits > last_hits:
            self.cache_requests.labels(cache=cache, result="hit").inc(hits - last_hits)
        if misses > last_misses:
            self.cache_requests.labels(cache=cache, result="miss").inc(misses - last_misses)
        self._cache_counts[cache] = (id(owner), hits, misses)

    def set_snapshot(self, manifest: Manifest, products: int) -> None:
        """Describe the serving snapshot (done at each scrape from ``app.state.engine``).

        Args:
            manifest: Its manifest.
            products: Its number of products.
        """
        labels = (manifest.snapshot_id, str(manifest.format_version), manifest.created_at)
        if labels != self._snapshot_labels:
            self._retire_snapshot_info()
            self.snapshot_info.labels(*labels).set(1)
            self._snapshot_labels = labels
            try:
                created = datetime.fromisoformat(manifest.created_at).timestamp()
            except ValueError:
                created = float("nan")
            self.snapshot_created.set(created)
        self.snapshot_products.set(products)

    def clear_snapshot(self) -> None:
        """No snapshot is served (start-up, shutdown)."""
        self._retire_snapshot_info()
        self._snapshot_labels = None
        self.snapshot_products.set(0)
        self.snapshot_created.set(float("nan"))

    def _retire_snapshot_info(self) -> None:
        # Zeroed before clear(): in multiprocess mode clear() leaves the value in the file.
        if self._snapshot_labels is not None:
            self.snapshot_info.labels(*self._snapshot_labels).set(0)
        self.snapshot_info.clear()

    def set_event_lag(self, seconds: float) -> None:
        """Record how far behind real time the behavioural signals are.

        Args:
            seconds: Now minus the time of the newest event folded in (0 when caught up).
        """
        self.event_lag.set(max(0.0, float(seconds)))

    def record_cache(self, cache: str, *, hit: bool) -> None:
        """Count one look-up of a cache.

        Args:
            cache: The cache's name (``"query"``, ``"embedding"``...): a few fixed names.
            hit: Whether the value was found.
        """
        self.cache_requests.labels(cache=cache, result="hit" if hit else "miss").inc()

    def cache_hit(self, cache: str) -> None:
        """Count a hit of ``cache`` (see :meth:`record_cache`)."""
        self.record_cache(cache, hit=True)

    def cache_miss(self, cache: str) -> None:
        """Count a miss of ``cache`` (see :meth:`record_cache`)."""
        self.record_cache(cache, hit=False)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (every worker's, added up, in
        multiprocess mode)."""
        if self.multiprocess_dir:
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined, path=self.multiprocess_dir)
            return generate_latest(combined)
        return generate_latest(self.registry)


def metrics_of(app: FastAPI) -> Metrics:
    """The metrics :func:`install_metrics` attached to ``app``.

    Raises:
        RuntimeError: :func:`install_metrics` was not called on ``app``.
    """
    metrics = getattr(app.state, "metrics", None)
    if not isinstance(metrics, Metrics):
        raise RuntimeError("no metrics on app.state: call install_metrics(app) in create_app")
    return metrics


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    include_in_schema=False,
    response_class=Response,
    summary="Prometheus metrics",
)
def prometheus_metrics(request: Request) -> Response:
    """Every metric in the Prometheus text format, the serving snapshot refreshed first."""
    metrics = metrics_of(request.app)
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        metrics.clear_snapshot()
    else:
        metrics.set_snapshot(engine.manifest, len(engine))
        embedder = getattr(engine, "embedder", None)
        hits, misses = getattr(embedder, "hits", None), getattr(embedder, "misses", None)
        if isinstance(hits, int) and isinstance(misses, int):
            metrics.set_cache_counts("query_vector", embedder, hits, misses)
    return Response(content=metrics.render(), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Times each HTTP request into :class:`Metrics` and writes its access-log line.

    Args:
        app: The application to wrap.
        metrics: Where to record.
        templates: Gives the application's path templates (read once, at the first request
            answered before routing, such as a 413 from a limit), to name such a request's
            route by its path; None leaves those requests unmatched.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        templates: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self._templates = templates
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    def patterns(self) -> list[tuple[re.Pattern[str], str]]:
        """Compiled path templates, those without parameters first."""
        if self._patterns is None:
            found = sorted(
                self._templates() if self._templates else (), key=lambda t: (t.count("{"), t)
            )
            self._patterns = [(compile_path(t)[0], t) for t in found]
        return self._patterns

    def route_of(self, scope: Scope) -> str:
        """The route template of a request (see :func:`route_template`)."""
        template = route_template(scope)
        if template == UNMATCHED_ROUTE and self._templates is not None:
            path = scope.get("path", "")
            for pattern, candidate in self.patterns():
                if pattern.match(path):
                    return candidate
        return template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _current_scope.set(scope)
        status = 500  # what the client gets when the application raises
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.in_flight.dec()
            route = self.route_of(scope)
            self.metrics.request_duration.labels(
                method=scope["method"], route=route, status=str(status)
            ).observe(elapsed)
            access_logger.info(
                "%s %s %d %.1f ms",
                scope["method"],
                scope.get("path", ""),
                status,
                elapsed * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope.get("path", ""),
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
            _current_scope.reset(token)


def route_template(scope: Scope) -> str:
    """The path template of the route that handled a request, or :data:`UNMATCHED_ROUTE`."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    return UNMATCHED_ROUTE


def install_metrics(app: FastAPI, metrics: Metrics | None = None) -> Metrics:
    """Record request metrics, write access logs and serve ``GET /metrics``.

    Call in ``create_app`` after adding the other middleware, so the timing covers them and
    every response (413s of the limits included) is counted. A second call returns the
    metrics already installed.

    Args:
        app: The application.
        metrics: The metrics to record into; new ones in their own registry when None.

    Returns:
        The metrics (also at ``app.state.metrics``, see :func:`metrics_of`), for :meth:`Metrics.set_event_lag` and
        :meth:`Metrics.record_cache`.
    """
    installed = getattr(app.state, "metrics", None)
    if isinstance(installed, Metrics):
        return installed  # already installed (create_app does it; a test may ask again)
    settings = getattr(app.state, "settings", None)
    metrics = metrics or Metrics(multiprocess_dir=getattr(settings, "metrics_dir", None))
    app.state.metrics = metrics
    app.add_middleware(
        MetricsMiddleware,
        metrics=metrics,
        templates=lambda: app.openapi().get("paths", {}).keys(),
    )
    app.include_router(router)
    return metrics


# --- structured logs ------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)

LevelName = Literal["critical", "error", "warning", "info", "debug", "trace"]

#: uvicorn's extra level below debug.
TRACE = 5


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id``
    (inside a request), ``exception`` (with a traceback) and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id is not None:
            out["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def configure_json_logging(
    level: LevelName | str | int = "info", *, stream: Any = None, uvicorn_access: bool = False
) -> logging.Handler:
    """Send every log record to one stream as JSON lines (:class:`JsonFormatter`).

    uvicorn's loggers are routed to the same handler; its access log is silenced unless
    ``uvicorn_access`` (:func:`install_metrics` writes access lines with the request id). Run
    uvicorn with ``log_config=None`` so it keeps this set-up.

    Args:
        level: ``critical``, ``error``, ``warning``, ``info``, ``debug`` or ``trace``, or a
            :mod:`logging` level number.
        stream: Where to write; standard error when None.
        uvicorn_access: Keep uvicorn's own access log too.

    Returns:
        The installed handler.

    Raises:
        ValueError: an unknown level name.
    """
    if isinstance(level, str):
        names = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}
        number = names.get(level.strip().lower())
        if number is None:
            raise ValueError(f"unknown log level {level!r}; valid levels: {', '.join(names)}")
    else:
        number = int(level)
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    if not uvicorn_access:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    return handler
