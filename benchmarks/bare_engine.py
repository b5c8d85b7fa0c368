"""The search engine behind a bare ASGI app: the ceiling of a Python service of our pipeline.

``python -m benchmarks.throughput --systems engine-lexical,engine-default,...`` serves the same
snapshots as the ``lexical`` and ``default`` rows through this app instead of the service: no
framework, no middleware, no keys, rate limits, events, A/B tests or response model, one search
at a time per worker on its event loop (no thread hand-offs), ``orjson`` for the answer. What it
serves is what the engine alone can do per core; the gap to the service's rows is what the service
around it costs.

It is a measuring instrument, not a way to serve shoppers: it checks nothing.

Run by uvicorn as a factory, configured by the environment::

    PRODUCTSEARCH_BARE_SNAPSHOT=var/bench/load-hd-lexical PRODUCTSEARCH_BARE_SEMANTIC=0 \\
        uvicorn --factory benchmarks.bare_engine:from_environment --workers 2
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

from search.engine import SearchEngine
from search.errors import InvalidRequestError
from search.types import SearchRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def bare_app(engine: SearchEngine) -> App:
    """``GET /search?q=&k=``: the engine's page as ``{"total", "hits": [{"id", "title",
    "score"}]}``; ``GET /ready``: 200 once the engine is loaded (it is, when this is called)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        status, body = 404, b'{"detail":"not found"}'
        if scope["path"] == "/ready":
            status, body = 200, b'{"ready":true}'
        elif scope["path"] == "/search":
            params = urllib.parse.parse_qs(scope["query_string"].decode("latin-1"))
            try:
                k = int(params.get("k", ["10"])[0])
                result = engine.search(SearchRequest(text=params.get("q", [""])[0], k=k))
            except (ValueError, InvalidRequestError) as exc:
                status, body = 422, orjson.dumps({"detail": str(exc)})
            else:
                status = 200
                body = orjson.dumps(
                    {
                        "total": result.total,
                        "hits": [
                            {"id": h.product.id, "title": h.product.title, "score": h.score}
                            for h in result.hits
                        ],
                    }
                )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def from_environment() -> App:
    """The app over ``PRODUCTSEARCH_BARE_SNAPSHOT``, with text vectors when
    ``PRODUCTSEARCH_BARE_SEMANTIC`` is 1, opened and warmed up as the service does."""
    from api.service import open_snapshot, warm_up_engine

    engine = open_snapshot(
        Path(os.environ["PRODUCTSEARCH_BARE_SNAPSHOT"]),
        use_semantic=os.environ.get("PRODUCTSEARCH_BARE_SEMANTIC", "0") == "1",
    )
    warm_up_engine(engine)
    return bare_app(engine)
