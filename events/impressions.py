"""Server-side impressions: every search answer gets an id, and what it showed is recorded.

Algolia calls the id ``queryID``. The service answers a search with ``query_id``; the
:class:`ImpressionRecorder` records the answer (query, product ids in order, the rank of the
first, the shopper's user and session when given, the time) as a ``search`` event stored under
``served:<query_id>``. Clients then send a click, add-to-cart or purchase with that
``query_id`` and nothing else about the search: :func:`events.store.attribute` takes the query
and the position from the record, so a client cannot claim a product was chosen at #1 that was
shown at #30, nor for a query that was never answered, nor for another shopper's search.
Search analytics and the behavioural signals count these records, so they see every answered
search (zero-result searches sent straight to the API included), not only the ones a client
reports.

Recording must not slow searches: :meth:`ImpressionRecorder.record` only appends to a queue
and a small in-memory index (microseconds); a background thread writes the queue to the event
store in batches every ``flush_s``. Until it does, :meth:`ImpressionRecorder.lookup` finds the
answer in memory, so a click right after the search is attributed on this replica; another
replica sharing the store sees the record after the next flush. When the store is down the
queue waits (bounded by ``max_pending``; the oldest records are dropped beyond it, with a
warning) and is written once the store is back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence

from events.store import (
    MAX_QUERY_LENGTH,
    MAX_RESULTS,
    SERVED_PREFIX,
    USER_SESSION_PREFIX,
    Event,
    EventStore,
    EventType,
    served_event_id,
)
from search.errors import EventStoreUnavailableError

logger = logging.getLogger("productevents.impressions")


def new_query_id() -> str:
    """A fresh, unguessable answer id (128 random bits as 32 hex digits)."""
    return uuid.uuid4().hex


class ImpressionRecorder:
    """Records search answers in the event store, asynchronously and in batches.

    Args:
        store: The event store.
        flush_s: Seconds between background writes.
        max_pending: Records kept waiting while the store cannot be written; beyond this the
            oldest are dropped (and counted in ``dropped``).
        cache_size: Recent answers kept in memory for :meth:`lookup`.
        clock: The time source.

    Raises:
        ValueError: A non-positive ``flush_s``, ``max_pending`` or ``cache_size``.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        flush_s: float = 0.5,
        max_pending: int = 100_000,
        cache_size: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not flush_s > 0 or max_pending < 1 or cache_size < 1:
            raise ValueError("flush_s, max_pending and cache_size must be positive")
        self.store = store
        self.flush_s = flush_s
        self.max_pending = max_pending
        self.cache_size = cache_size
        self.clock = clock
        self.dropped = 0
        self._pending: deque[Event] = deque()
        self._recent: OrderedDict[str, Event] = OrderedDict()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        query: str,
        results: Sequence[str],
        *,
        first_position: int = 1,
        user_id: str | None = None,
        session_id: str | None = None,
        channel: str | None = None,
        variants: Mapping[str, str] | None = None,
        query_id: str | None = None,
        without_text: bool = False,
    ) -> str | None:
        """Record one answer (queued; written by the background thread).

        Args:
            query: The query text as received (blank: a browse, not recorded).
            results: Product ids shown, best first.
            first_position: 1-based rank of ``results[0]`` (``(page - 1) * k + 1``).
            user_id: The signed-in shopper, or None.
            session_id: The shopper's session, or None.
            channel: ``"web"``, ``"app"``... or None.
            variants: The shopper's A/B test arms, or None.
            query_id: The id to record under (default: a fresh one).
            without_text: Record the answer even without query text (a photo search: the
                photo was the query). Its record has no query, so analytics and the
                per-query signals leave it out, while clicks citing it are attributed (the
                position from the record, no query).

        Returns:
            The answer's ``query_id``; None for a browse without query text.
        """
        text = query.strip()[:MAX_QUERY_LENGTH]
        if not text and not without_text:
            return None
        query_id = query_id or new_query_id()
        if session_id is None:
            # A search without a session still gets a shopper to count (one per answer when
            # anonymous: it binds to nobody, see events.store.same_shopper).
            session_id = USER_SESSION_PREFIX + user_id if user_id else served_event_id(query_id)
        event = Event(
            event_id=served_event_id(query_id),
            type=EventType.SEARCH,
            session_id=session_id,
            timestamp=self.clock(),
            user_id=user_id,
            query=text or None,
            position=first_position if first_position > 1 else None,
            channel=channel.lower() if channel else None,
            results=tuple(results[:MAX_RESULTS]),
            variants=dict(variants) if variants else None,
            query_id=query_id,
        )
        with self._lock:
            self._pending.append(event)
            if len(self._pending) > self.max_pending:
                self._pending.popleft()
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    logger.warning(
                        "the event store has not taken search records for a while: %d dropped "
                        "so far (kept at most %d waiting)",
                        self.dropped,
                        self.max_pending,
                    )
            self._recent[query_id] = event
            if len(self._recent) > self.cache_size:
                self._recent.popitem(last=False)
        return query_id

    def lookup(self, query_id: str) -> Event | None:
        """The record of answer ``query_id``: from memory when recent, else from the store.

        Raises:
            search.errors.EventStoreUnavailableError: Not in memory and the store is down.
        """
        if query_id.startswith(SERVED_PREFIX):
            return None
        with self._lock:
            event = self._recent.get(query_id)
        if event is not None:
            return event
        return self.store.get_event(served_event_id(query_id))

    def flush(self) -> int:
        """Write the queued records now (what the background thread does every ``flush_s``).

        Returns:
            Records written.

        Raises:
            search.errors.EventStoreUnavailableError: The store cannot be written (the records
                stay queued).
        """
        with self._flush_lock:
            with self._lock:
                batch = list(self._pending)
            if not batch:
                return 0
            self.store.append(batch)  # a retry after a lost answer is stored once (event ids)
            written = {id(event) for event in batch}
            with self._lock:
                # Only what was written: records that overflowed meanwhile are gone already.
                while self._pending and id(self._pending[0]) in written:
                    self._pending.popleft()
            return len(batch)

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._pending)

    def start(self) -> None:
        """Start writing in the background (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread and write what is queued (best effort)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.flush()
        except EventStoreUnavailableError as exc:
            logger.warning("%d search records not written at shutdown: %s", self.pending, exc)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
                if failing:
                    failing = False
                    logger.warning("search records are written again")
            except EventStoreUnavailableError as exc:
                if not failing:  # once per outage, not twice a second
                    failing = True
                    logger.warning("writing search records: %s (kept, retried)", exc)
            except Exception:  # keep recording; the log tells why
                if self._stop.is_set():
                    return
                logger.exception("writing search records failed")
