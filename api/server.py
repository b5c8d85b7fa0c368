"""Running the HTTP server: one uvicorn process, or several worker processes forked from one.

A Python process runs searches on one core at a time (the GIL), so a machine's cores are used by
worker processes (``PRODUCTSEARCH_WORKERS``, one per core). The snapshot is opened once, in the
parent, and the workers are forked from it (gunicorn's ``preload_app`` with uvicorn's worker
class): the lexical arrays, the vector graph and the product table are pages the workers share
copy-on-write instead of each loading its own. Nothing that must not cross a ``fork`` is made
before it: the application itself (key store and event store connections, background threads,
model sessions) is created by each worker when its lifespan starts. gunicorn restarts a worker
that dies and stops them all gracefully on SIGTERM.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from api.settings import Settings, share_metrics_between_processes
from search.engine import SearchEngine

Scope = dict[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class PerWorkerApp:
    """An ASGI application built on its first call, i.e. in the worker process that serves it.

    Args:
        factory: Builds the application (called once per process).
    """

    def __init__(self, factory: Callable[[], ASGI]) -> None:
        self._factory = factory
        self._app: ASGI | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = self._factory()
        await self._app(scope, receive, send)


def run(settings: Settings, engine: SearchEngine, log_config: dict[str, Any] | None) -> None:
    """Serve ``engine`` on ``settings.host:settings.port`` until stopped.

    Args:
        settings: The service settings (``workers`` decides one process or several).
        engine: The opened snapshot.
        log_config: uvicorn's logging configuration (API keys redacted from its lines).
    """
    from api.app import create_app
    from api.service import settle_heap

    if settings.workers == 1:
        import uvicorn

        uvicorn.run(
            create_app(settings, engine=engine),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=log_config,
        )
        return
    # Loaded once here, the stemmer tables (Polish: 170 MB) are pages the workers share.
    engine.analyzer.warm_up()
    settle_heap()
    _prefork(settings, PerWorkerApp(lambda: create_app(settings, engine=engine)))


def _prefork(settings: Settings, app: PerWorkerApp) -> None:
    from gunicorn.app.base import BaseApplication

    # Each worker writes its metric values here; a scrape of any worker adds them all up
    # (api/metrics.py). A fresh folder per run: values of an earlier run must not count.
    metrics_dir = tempfile.mkdtemp(prefix="productsearch-metrics-")
    share_metrics_between_processes(settings, Path(metrics_dir))

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, metrics_dir)

    def on_exit(server: Any) -> None:
        shutil.rmtree(metrics_dir, ignore_errors=True)

    options = {
        "bind": f"{settings.host}:{settings.port}",
        "child_exit": child_exit,
        "on_exit": on_exit,
        "workers": settings.workers,
        "worker_class": "uvicorn_worker.UvicornWorker",
        "preload_app": True,
        # Start-up waits up to ready_wait_s for the warm-up query; a worker is killed only when
        # it stops answering its heartbeat for much longer than that.
        "timeout": max(120, int(settings.ready_wait_s) + 60),
        "graceful_timeout": 30,
        "loglevel": "debug" if settings.log_level == "trace" else settings.log_level,
        # No access log of gunicorn's own: the service logs its requests (with keys redacted).
        "accesslog": None,
    }

    class Server(BaseApplication):
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> PerWorkerApp:
            return app

    logging.getLogger(__name__).info(
        "serving with %d worker processes on %s", settings.workers, options["bind"]
    )
    Server().run()
