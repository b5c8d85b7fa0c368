"""Request limits: body size, query-string length and a time limit for search requests.

* A body larger than the limit gets 413 with a JSON ``detail`` naming the limit: at once when
  ``Content-Length`` says so, and while reading when a body without one (chunked) grows past it.
* A query string longer than its limit gets 414.
* A search that has not started answering within the time limit gets 503 with ``Retry-After``:
  the client is told quickly instead of waiting on an overloaded replica. The work already
  running in the thread pool cannot be stopped from outside and finishes unobserved.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection

import orjson
from fastapi import FastAPI, HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Paths the time limit applies to by default (the interactive search endpoints).
SEARCH_PATHS = ("/search", "/suggest")

#: Longest query string accepted by default (browsers and proxies cut near 8 KiB as well).
DEFAULT_MAX_QUERY_BYTES = 8192


class BodyTooLargeError(HTTPException):
    """A request body is larger than the limit (raised while the body is read).

    An :class:`~fastapi.HTTPException`, so FastAPI's body parsing lets it through to become a
    413 response instead of turning it into a 400 "error parsing the body".

    Args:
        limit: The limit in bytes.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, body_too_large_message(limit))
        self.limit = limit


def body_too_large_message(limit: int) -> str:
    """The 413 message: what the limit is."""
    return f"request body too large: the limit is {limit:,} bytes"


async def send_json(
    send: Send, status: int, detail: str, headers: Collection[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete ``{"detail": ...}`` JSON response."""
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``max_body_bytes`` (413) and query strings over
    ``max_query_bytes`` (414).

    Args:
        app: The application to wrap.
        max_body_bytes: Largest body accepted (>= 1).
        max_query_bytes: Longest query string accepted (>= 1).

    Raises:
        ValueError: a limit below 1.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_query_bytes: int = DEFAULT_MAX_QUERY_BYTES,
    ) -> None:
        if max_body_bytes < 1 or max_query_bytes < 1:
            raise ValueError(
                f"max_body_bytes and max_query_bytes must be >= 1, got {max_body_bytes}, "
                f"{max_query_bytes}"
            )
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_query_bytes = max_query_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        query = scope.get("query_string", b"")
        if len(query) > self.max_query_bytes:
            await send_json(
                send,
                414,
                f"query string too long: {len(query):,} bytes, the limit is "
                f"{self.max_query_bytes:,} bytes",
            )
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(send, 400, "Content-Length is not a number")
                    return
                if declared > limit:
                    await send_json(send, 413, body_too_large_message(limit))
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            # Raised where no exception handler turned it into a response (a handler reading
            # the stream outside FastAPI's body parsing, or a middleware).
            if started:
                raise
            await send_json(send, 413, body_too_large_message(limit))


class TimeLimitMiddleware:
    """Answers 503 when a request to one of ``paths`` has not started its response in time.

    Args:
        app: The application to wrap.
        timeout_s: Seconds a request may take before its response starts (> 0).
        paths: Request paths the limit applies to (exact match).

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """

    def __init__(
        self, app: ASGIApp, timeout_s: float, paths: Collection[str] = SEARCH_PATHS
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.app = app
        self.timeout_s = float(timeout_s)
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        started = asyncio.Event()
        timed_out = False

        async def guarded_send(message: Message) -> None:
            if timed_out:
                return  # the 503 went out; the late answer is dropped
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait(
                {task, waiter}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if task.done() or started.is_set():
            await task  # finished, or answering: let it finish (and raise what it raises)
            return
        timed_out = True
        task.cancel()
        task.add_done_callback(_consume)
        await send_json(
            send,
            503,
            f"the request took longer than the {self.timeout_s:g} s limit; retry, or narrow "
            "the query",
            headers=[(b"retry-after", b"1")],
        )


def _consume(task: asyncio.Future[None]) -> None:
    # Retrieve the abandoned request's outcome so asyncio does not log it as never retrieved.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


def install_limits(
    app: FastAPI,
    max_body_bytes: int,
    timeout_s: float,
    *,
    max_query_bytes: int = DEFAULT_MAX_QUERY_BYTES,
    timeout_paths: Collection[str] = SEARCH_PATHS,
) -> None:
    """Add the body size, query-string and search time limits to ``app``.

    Args:
        app: The application (before it starts).
        max_body_bytes: Largest request body accepted (413 above); photo and voice uploads
            must fit too.
        timeout_s: Seconds a search may take before the client gets 503.
        max_query_bytes: Longest query string accepted (414 above).
        timeout_paths: Paths the time limit applies to.

    Raises:
        ValueError: a limit below 1 byte, or a time limit that is not positive.
    """
    # Validate now rather than when the middleware stack is first built (first request).
    BodySizeLimitMiddleware(app, max_body_bytes, max_query_bytes)
    TimeLimitMiddleware(app, timeout_s, timeout_paths)
    app.add_middleware(TimeLimitMiddleware, timeout_s=timeout_s, paths=tuple(timeout_paths))
    app.add_middleware(
        BodySizeLimitMiddleware, max_body_bytes=max_body_bytes, max_query_bytes=max_query_bytes
    )
