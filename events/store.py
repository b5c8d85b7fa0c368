"""Shopper events: the record, its validation, and the stores that keep it durably.

An event is one thing a shopper did: a search (with the result ids shown, the impressions the
click model learns from), a view, a click, an add-to-cart or a purchase. Every store keeps
events in arrival order under a growing sequence number (``seq``), so the background refresh in
:mod:`events.signals` folds only what is new, and under a unique ``event_id``, so a retried
batch is stored once (idempotency).

Two implementations of :class:`EventStore`:

* :class:`SQLiteEventStore`, the embedded default: one file in WAL mode. ``append`` returns only
  after the transaction committed, so an acknowledged event is in the WAL file. With
  ``synchronous="NORMAL"`` the WAL is written (``write(2)``) but not fsync'd on commit: it
  survives a crash or SIGKILL of the process (the OS page cache still holds the data), not a
  power loss. ``"FULL"`` (the default) also fsyncs the WAL on every commit and survives power
  loss; events arrive in batches, so one fsync per batch keeps ingestion fast.
* :class:`PostgresEventStore`, for several replicas sharing one store (``psycopg`` 3).

**Erasure reaches every replica.** ``forget_user`` deletes a user's events and, in the same
transaction (script, for Redis), appends an :class:`Erasure` (a sequence number, the user id, the
time) to the store's erasure log: the ``erasures`` table (``<table>_erasures`` in PostgreSQL).
Every replica's :class:`events.signals.SignalsRefresher` reads the log with
``erasures_since`` on each refresh and drops that user's profiles (and their sessions') from
memory, so within one refresh interval no replica personalises with the user's history. The
log keeps nothing but the user id and the time, and only as long as a replica may need to catch
up: the refresher deletes records older than its ``erasure_retention_days`` (7 by default) with
``purge_erasures_before``.

**A store that cannot be reached** (PostgreSQL or Redis down, a SQLite file locked beyond its
timeout, a closed store) raises :class:`EventStoreUnavailableError`; nothing of that call was
acknowledged, and the API answers 503 with ``Retry-After``.

**Server-recorded answers.** The service records each search answer itself as a ``search``
event under ``served:<query_id>`` (:mod:`events.impressions`); an event sent with that
``query_id`` is attributed to the record by :func:`ingest` (:func:`attribute`): query and
position come from the server, and an unknown ``query_id`` or another shopper's is rejected.

Events may carry the A/B test variants the shopper was served (``variants``, as the search
answer reported them); :func:`experiment_counts` counts an experiment's units, clicks and
purchases per variant from them (in SQL in both stores above).
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

from merchandising.experiments import ID_PATTERN, UNITS, Unit, VariantCounts, tally
from search.analysis import normalise_query
from search.errors import (
    EventStoreUnavailableError,
    FieldError,
    InvalidEventError,
)
from search.private_files import prepare_private_db

MAX_ID_LENGTH = 200
MAX_QUERY_LENGTH = 1000
MAX_RESULTS = 250
MAX_CHANNEL_LENGTH = 32
MAX_VARIANTS = 20
"""Most experiments one event may name in ``variants``."""
FUTURE_TOLERANCE_S = 300.0
"""How far ahead of the server's clock a timestamp may be (client clocks drift)."""
SERVED_PREFIX = "served:"
"""Event ids starting with this are the server's records of its search answers
(``served:<query_id>``, see :mod:`events.impressions`); clients may not use them."""
USER_SESSION_PREFIX = "user:"
"""An event with a ``user_id`` and no ``session_id`` is filed under session ``user:<user_id>``."""
TYPING_WINDOW_S = 10.0
"""A recorded search that the same shopper's next one extends, trims or repeats within this
many seconds was a keystroke of search-as-you-type (or a page), not a search of its own."""


def superseded(earlier: Event, later: Event) -> bool:
    """Whether ``earlier`` was only a step on the way to ``later``: both recorded by the
    server (``query_id``) for the same, known shopper, within :data:`TYPING_WINDOW_S`, and one
    query a prefix of the other ("sof" -> "sofa", a deleted character "sofx" -> "sof", the
    same query again: a trailing space typed, the next page)."""
    if earlier.query_id is None or later.query_id is None:
        return False
    if earlier.session_id.startswith(SERVED_PREFIX) or earlier.session_id != later.session_id:
        return False
    if not 0 <= later.timestamp - earlier.timestamp <= TYPING_WINDOW_S:
        return False
    a, b = earlier.normalised_query or "", later.normalised_query or ""
    if not a or not b:
        return False  # an answer without query text (a photo) is no keystroke of another
    return b.startswith(a) or a.startswith(b)


class EventType(StrEnum):
    """What a shopper did."""

    SEARCH = "search"
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"


PRODUCT_EVENTS = frozenset(
    {EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE}
)
"""Event types that are about one product and so need ``product_id``."""


@dataclass(frozen=True, slots=True)
class Event:
    """One validated shopper event.

    Attributes:
        event_id: Unique id; a second event with the same id is a duplicate and is not stored.
        type: What happened.
        session_id: The shopper's session (anonymous sessions count too).
        timestamp: When it happened, seconds since the Unix epoch (UTC).
        user_id: The signed-in shopper, or None for an anonymous session.
        product_id: The product concerned (required for every type but ``search``).
        query: The query the shopper had typed (a search's text; for a click, add-to-cart or
            purchase, the search that led there), or None.
        position: 1-based rank of ``product_id`` in the results of ``query``, or None; on
            a search, the rank of ``results[0]`` (a later page), None meaning 1.
        channel: ``"web"``, ``"app"``... or None.
        results: For a search, the product ids shown, best first (the impressions); an
            empty tuple is a search that found nothing; None when not reported.
        variants: A/B test arms the shopper was served: experiment id -> variant name, as the
            search answer's ``variants`` reported them; None when in no experiment.
        query_id: The search answer this event belongs to (the answer's ``query_id``): on a
            server-recorded search, its own id; on a click, add-to-cart or purchase, the
            answer it was chosen from, whose record gives ``query`` and ``position``.
    """

    event_id: str
    type: EventType
    session_id: str
    timestamp: float
    user_id: str | None = None
    product_id: str | None = None
    query: str | None = None
    position: int | None = None
    channel: str | None = None
    results: tuple[str, ...] | None = None
    variants: Mapping[str, str] | None = None
    query_id: str | None = None

    @property
    def normalised_query(self) -> str | None:
        """:func:`search.analysis.normalise_query` of ``query`` (computed on read: rows
        written before a change of that function are keyed by the new one), or None without a
        query."""
        return normalise_query(self.query) if self.query else None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event with the sequence number its store gave it (arrival order)."""

    seq: int
    event: Event


@dataclass(frozen=True, slots=True)
class Erasure:
    """One entry of a store's erasure log: a user whose events were forgotten.

    Attributes:
        seq: Position in the log (growing; numbered apart from the events).
        user_id: The erased user (the only personal data the log keeps).
        timestamp: When the erasure ran, seconds since the Unix epoch (for its retention).
    """

    seq: int
    user_id: str
    timestamp: float


_FIELDS = frozenset(
    {
        "event_id",
        "type",
        "user_id",
        "session_id",
        "product_id",
        "query",
        "position",
        "channel",
        "timestamp",
        "results",
        "variants",
        "query_id",
    }
)


def _text(
    data: Mapping[str, Any], name: str, errors: list[FieldError], *, limit: int = MAX_ID_LENGTH
) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError(name, "must be a string"))
        return None
    value = value.strip()
    if not value:
        errors.append(FieldError(name, "must not be blank (leave it out instead)"))
        return None
    if len(value) > limit:
        errors.append(FieldError(name, f"must be at most {limit} characters"))
        return None
    return value


def _variants(value: Any, errors: list[FieldError]) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        errors.append(
            FieldError("variants", 'must be an object of experiment id -> variant, {"e1": "b"}')
        )
        return None
    if len(value) > MAX_VARIANTS:
        errors.append(FieldError("variants", f"must name at most {MAX_VARIANTS} experiments"))
        return None
    variants: dict[str, str] = {}
    for key, name in value.items():
        if not isinstance(key, str) or not ID_PATTERN.fullmatch(key):
            errors.append(
                FieldError(
                    "variants", f"experiment id {key!r} is not 1-100 letters, digits or ._:-"
                )
            )
        elif not isinstance(name, str) or not ID_PATTERN.fullmatch(name):
            errors.append(
                FieldError(
                    f"variants.{key}", "must be a variant name: 1-100 letters, digits or ._:-"
                )
            )
        else:
            variants[key] = name
    # An empty object is "in no experiment", stored as None.
    return dict(sorted(variants.items())) or None


def _timestamp(value: Any, now: float, errors: list[FieldError]) -> float:
    if value is None:
        return now
    ts: float | None = None
    if isinstance(value, bool):
        ts = None
    elif isinstance(value, int | float):
        ts = float(value)
        # Milliseconds since the epoch are common in browser code: accept them too.
        if ts > 1e11:
            ts /= 1000.0
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            ts = None
        else:
            if parsed.tzinfo is None:
                errors.append(FieldError("timestamp", "ISO 8601 time must carry a time zone"))
                return now
            ts = parsed.timestamp()
    if ts is None or not math.isfinite(ts) or ts <= 0:
        errors.append(
            FieldError("timestamp", "must be Unix seconds (or milliseconds) or ISO 8601 with zone")
        )
        return now
    if ts > now + FUTURE_TOLERANCE_S:
        errors.append(FieldError("timestamp", "is in the future"))
        return now
    return ts


def parse_event(
    data: Any, *, now: float | None = None, default_event_id: str | None = None
) -> Event:
    """Validate one event as received (a JSON object) and build an :class:`Event`.

    Args:
        data: The decoded JSON value.
        now: The server's clock (default: ``time.time()``); a missing timestamp takes it.
        default_event_id: Id used when the event carries no ``event_id`` (the API derives it
            from the batch's idempotency key and the event's index); a random id otherwise.

    Returns:
        The event.

    Raises:
        InvalidEventError: Listing every bad field: unknown ``type`` (valid: search, view,
            click, add_to_cart, purchase), neither ``session_id`` nor ``user_id`` (an event with
            only ``user_id`` is filed under session ``user:<user_id>``), missing ``product_id`` on a
            product event, missing ``query`` on a search, ``position`` below 1, ``results`` on
            another type than search, ``variants`` that is not an object of experiment id ->
            variant name (``variants.<experiment>`` names a bad name), a timestamp in the
            future, unknown fields...
    """
    now = time.time() if now is None else now
    if not isinstance(data, Mapping):
        raise InvalidEventError([FieldError("*", "an event must be a JSON object")])
    errors: list[FieldError] = []
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        errors.append(
            FieldError(
                unknown[0],
                f"unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_FIELDS))}",
            )
        )
    raw_type = data.get("type")
    event_type: EventType | None = None
    if raw_type is None:
        errors.append(FieldError("type", "is required; valid: " + ", ".join(EventType)))
    else:
        try:
            event_type = EventType(raw_type)
        except ValueError:
            errors.append(
                FieldError("type", f"unknown type {raw_type!r}; valid: {', '.join(EventType)}")
            )
    event_id = _text(data, "event_id", errors, limit=128)
    session_id = _text(data, "session_id", errors)
    user_id = _text(data, "user_id", errors)
    if session_id is None and data.get("session_id") is None:
        if user_id is not None:
            # A signed-in shopper's events need no session: they are theirs either way.
            session_id = USER_SESSION_PREFIX + user_id
        elif data.get("user_id") is None:
            errors.append(
                FieldError(
                    "session_id",
                    "is required without a user_id (anonymous sessions need one too)",
                )
            )
    query_id = _text(data, "query_id", errors, limit=MAX_ID_LENGTH)
    product_id = _text(data, "product_id", errors)
    query = _text(data, "query", errors, limit=MAX_QUERY_LENGTH)
    channel = _text(data, "channel", errors, limit=MAX_CHANNEL_LENGTH)
    position = data.get("position")
    if position is not None and (
        isinstance(position, bool) or not isinstance(position, int) or position < 1
    ):
        errors.append(FieldError("position", "must be an integer, 1 or more (1 = top result)"))
        position = None
    raw_results = data.get("results")
    results: tuple[str, ...] | None = None
    if raw_results is not None:
        if not isinstance(raw_results, list) or not all(
            isinstance(r, str) and r and len(r) <= MAX_ID_LENGTH for r in raw_results
        ):
            errors.append(FieldError("results", "must be a list of product ids (strings)"))
        elif len(raw_results) > MAX_RESULTS:
            errors.append(FieldError("results", f"must hold at most {MAX_RESULTS} ids"))
        else:
            results = tuple(raw_results)
    variants = _variants(data.get("variants"), errors)
    timestamp = _timestamp(data.get("timestamp"), now, errors)
    if event_type in PRODUCT_EVENTS and product_id is None and data.get("product_id") is None:
        errors.append(FieldError("product_id", f"is required for a {event_type} event"))
    if event_type is EventType.SEARCH and query is None and data.get("query") is None:
        errors.append(FieldError("query", "is required for a search event"))
    if event_type is not None and event_type is not EventType.SEARCH and results is not None:
        errors.append(FieldError("results", "only a search event carries results"))
    if errors or event_type is None or session_id is None:
        raise InvalidEventError(errors)
    return Event(
        event_id=event_id or default_event_id or uuid.uuid4().hex,
        type=event_type,
        session_id=session_id,
        timestamp=timestamp,
        user_id=user_id,
        product_id=product_id,
        query=query,
        position=position,
        channel=channel.lower() if channel else None,
        results=results,
        variants=variants,
        query_id=query_id,
    )


def event_to_dict(event: Event) -> dict[str, Any]:
    """The JSON form of an event (the keys :func:`parse_event` reads).

    With :func:`parse_event`, the one place an event's fields are (de)serialised: stores that
    keep events as JSON go through both, so a new field passes through them.
    """
    return {
        "event_id": event.event_id,
        "type": event.type.value,
        "session_id": event.session_id,
        "timestamp": event.timestamp,
        "user_id": event.user_id,
        "product_id": event.product_id,
        "query": event.query,
        "position": event.position,
        "channel": event.channel,
        "results": list(event.results) if event.results is not None else None,
        "variants": dict(event.variants) if event.variants is not None else None,
        "query_id": event.query_id,
    }


# --------------------------------------------------------------------------------------------
# Stores


@runtime_checkable
class EventStore(Protocol):
    """Durable, append-only (but forgettable) storage of events.

    ``append`` returns only once the events are durable: an acknowledged event is never lost.
    Every method raises :class:`EventStoreUnavailableError` when the store cannot be reached.
    """

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Store a batch atomically.

        Returns:
            Per event: True when stored, False when an event with its ``event_id`` was
            already stored (a retry).
        """
        ...

    def read_since(self, after_seq: int, limit: int = 10_000) -> list[StoredEvent]:
        """Events with ``seq > after_seq`` in ``seq`` order, at most ``limit``."""
        ...

    def scan(
        self,
        start: float | None = None,
        end: float | None = None,
        types: Sequence[EventType] = (),
    ) -> Iterator[Event]:
        """Events with ``start <= timestamp < end`` (None: unbounded), of these types (all
        when empty), in ``seq`` order."""
        ...

    def last_seq(self) -> int:
        """The highest sequence number stored (0 when empty)."""
        ...

    def get_event(self, event_id: str) -> Event | None:
        """The event stored under ``event_id``, or None (how a click's ``query_id`` finds the
        server's record of the answer it came from)."""
        ...

    def count(self) -> int:
        """Number of events stored."""
        ...

    def forget_user(self, user_id: str) -> int:
        """Delete every event of a user, and of every session the user had (GDPR erasure), and
        append an :class:`Erasure` to the erasure log in the same transaction, so every
        replica's refresher drops the user's in-memory profiles. Logged even when no event was
        left (retention may have deleted them while profiles still hold them).

        Returns:
            Events deleted.
        """
        ...

    def erasures_since(self, after_seq: int, limit: int = 10_000) -> list[Erasure]:
        """Erasures with ``seq > after_seq`` in ``seq`` order, at most ``limit``."""
        ...

    def purge_erasures_before(self, timestamp: float) -> int:
        """Delete erasure records older than ``timestamp``. Returns records deleted."""
        ...

    def purge_before(self, timestamp: float) -> int:
        """Delete events older than ``timestamp`` (retention). Returns events deleted."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


_COLUMNS = (
    "event_id, type, session_id, ts, user_id, product_id, query, norm_query, position, "
    "channel, results, variants, query_id"
)
_N_COLUMNS = _COLUMNS.count(",") + 1
_ADDED_COLUMNS = ("variants", "query_id")
"""Columns added after the first schema (older databases get them on open)."""


def _row(event: Event) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.type.value,
        event.session_id,
        event.timestamp,
        event.user_id,
        event.product_id,
        event.query,
        event.normalised_query,
        event.position,
        event.channel,
        orjson.dumps(event.results).decode() if event.results is not None else None,
        (
            orjson.dumps(dict(event.variants), option=orjson.OPT_SORT_KEYS).decode()
            if event.variants
            else None
        ),
        event.query_id,
    )


def _event(row: Sequence[Any]) -> Event:
    # Column order of _COLUMNS (seq stripped by the caller).
    return Event(
        event_id=row[0],
        type=EventType(row[1]),
        session_id=row[2],
        timestamp=float(row[3]),
        user_id=row[4],
        product_id=row[5],
        query=row[6],
        position=row[8],
        channel=row[9],
        results=tuple(orjson.loads(row[10])) if row[10] is not None else None,
        variants=orjson.loads(row[11]) if row[11] is not None else None,
        query_id=row[12],
    )


def _scan_sql(
    start: float | None, end: float | None, types: Sequence[EventType], mark: str
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if start is not None:
        where.append(f"ts >= {mark}")
        params.append(start)
    if end is not None:
        where.append(f"ts < {mark}")
        params.append(end)
    if types:
        where.append(f"type IN ({', '.join([mark] * len(types))})")
        params.extend(t.value for t in types)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {_COLUMNS} FROM events{clause} ORDER BY seq", params


def _unit_sql(unit: Unit) -> str:
    """SQL of an event's unit id, as :func:`unit_key` computes it."""
    if unit == "session":
        return "session_id"
    return "CASE WHEN user_id IS NOT NULL THEN 'u:' || user_id ELSE 's:' || session_id END"


def unit_key(event: Event, unit: Unit) -> str:
    """The unit an event counts for in an experiment's report.

    Args:
        event: The event.
        unit: The experiment's unit.

    Returns:
        ``"u:<user>"`` (``"s:<session>"`` while anonymous) for ``"user"``; the session id for
        ``"session"``.
    """
    if unit == "session":
        return event.session_id
    return f"u:{event.user_id}" if event.user_id is not None else f"s:{event.session_id}"


def _counts_sql(
    variant: str, unit: Unit, start: float | None, end: float | None, mark: str
) -> tuple[str, list[Any]]:
    """Per-variant units, clicked units and converted units of one experiment, in one query.

    ``variant`` is the SQL reading the experiment's variant from ``variants`` (one ``mark``
    parameter, the caller's first); one row per variant: name, units, clicked, converted.
    """
    where = ["variants IS NOT NULL"]
    params: list[Any] = []
    if start is not None:
        where.append(f"ts >= {mark}")
        params.append(start)
    if end is not None:
        where.append(f"ts < {mark}")
        params.append(end)
    sql = (
        "SELECT v, COUNT(*), SUM(c), SUM(p) FROM ("
        " SELECT v, u, MAX(c) AS c, MAX(p) AS p FROM ("
        f"  SELECT {variant} AS v, {_unit_sql(unit)} AS u,"
        "   CASE WHEN type = 'click' THEN 1 ELSE 0 END AS c,"
        "   CASE WHEN type = 'purchase' THEN 1 ELSE 0 END AS p"
        f"  FROM events WHERE {' AND '.join(where)}"
        " ) AS tagged WHERE v IS NOT NULL GROUP BY v, u"
        ") AS units GROUP BY v ORDER BY v"
    )
    return sql, params


def _check_counts_args(experiment_id: str, unit: str) -> None:
    if not ID_PATTERN.fullmatch(experiment_id):
        raise ValueError(
            f"experiment id must be 1-100 letters, digits or ._:-, not {experiment_id!r}"
        )
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")


def _counts(rows: Sequence[Sequence[Any]]) -> dict[str, VariantCounts]:
    return {str(v): VariantCounts(int(n), int(c), int(p)) for v, n, c, p in rows}


SQLiteSynchronous = Literal["NORMAL", "FULL"]

_SQLITE_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
)
"""SQLite error names (and their extended forms) that mean "not now", not "wrong SQL"."""


@contextmanager
def _sqlite_errors() -> Iterator[None]:
    """Turn SQLite's "locked / cannot open / I/O error" into :class:`EventStoreUnavailableError`
    (sqlite3 raises syntax errors as ``OperationalError`` too: those stay as they are)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(_SQLITE_UNAVAILABLE) or "locked" in str(exc):
            raise EventStoreUnavailableError(f"SQLite event store: {exc}") from exc
        raise


class SQLiteEventStore:
    """Events in one SQLite file in WAL mode (the embedded default).

    Writes go through one connection under a lock (SQLite has one writer anyway); reads use a
    connection per thread, which WAL lets run beside the writer without blocking it.

    Args:
        path: Database file (created with its folder), or ``":memory:"`` for a throw-away store
            (tests; not durable, one connection).
        synchronous: ``"FULL"`` fsyncs the WAL on every commit (survives power loss);
            ``"NORMAL"`` does not (survives a crash of the process, not of the machine).
        timeout_s: Seconds a call waits for another process's write lock before raising
            :class:`EventStoreUnavailableError`.

    Raises:
        ValueError: ``synchronous`` is not NORMAL or FULL, or ``timeout_s`` is negative.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: SQLiteSynchronous = "FULL",
        timeout_s: float = 30.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be 0 or more, not {timeout_s!r}")
        self.path = str(path)
        self.synchronous = synchronous
        self.timeout_s = float(timeout_s)
        self._memory = self.path == ":memory:"
        if not self._memory:
            # Every shopper's queries and clicks: readable by the service's user only.
            prepare_private_db(self.path)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._writer = self._connect()
        with _sqlite_errors(), self._writer:
            self._writer.executescript(
                """
                CREATE TABLE IF NOT EXISTS events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id TEXT NOT NULL UNIQUE,
                    type TEXT NOT NULL,
                    session_id TEXT NOT NULL,
                    ts REAL NOT NULL,
                    user_id TEXT,
                    product_id TEXT,
                    query TEXT,
                    norm_query TEXT,
                    position INTEGER,
                    channel TEXT,
                    results TEXT,
                    variants TEXT,
                    query_id TEXT
                );
                CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
                CREATE INDEX IF NOT EXISTS events_user ON events (user_id) WHERE user_id IS NOT NULL;
                CREATE INDEX IF NOT EXISTS events_session ON events (session_id);
                CREATE TABLE IF NOT EXISTS erasures (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    user_id TEXT NOT NULL,
                    ts REAL NOT NULL
                );
                CREATE INDEX IF NOT EXISTS erasures_ts ON erasures (ts);
                """
            )
        self._migrate()
        with self._writer:
            # Experiment reports read only the events that carry variants.
            self._writer.execute(
                "CREATE INDEX IF NOT EXISTS events_variants ON events (ts) "
                "WHERE variants IS NOT NULL"
            )

    def _migrate(self) -> None:
        """Bring a database written by an older version up to this schema (columns added
        since: ``variants``, ``query_id``). Checked again inside the write lock, so two
        processes opening the same old file at once both succeed."""

        def missing(conn: sqlite3.Connection) -> list[str]:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            return [c for c in _ADDED_COLUMNS if c not in columns]

        if not missing(self._writer):
            return
        with self._transaction() as conn:
            for column in missing(conn):
                conn.execute(f"ALTER TABLE events ADD COLUMN {column} TEXT")

    def _connect(self) -> sqlite3.Connection:
        with _sqlite_errors():
            conn = sqlite3.connect(
                self.path, timeout=self.timeout_s, check_same_thread=False, isolation_level=None
            )
            if not self._memory:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise EventStoreUnavailableError("the event store is closed")
        if self._memory:
            return self._writer
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def append(self, events: Sequence[Event]) -> list[bool]:
        """See :meth:`EventStore.append`; returns after the commit (and its fsync under FULL)."""
        if not events:
            return []
        stored: list[bool] = []
        sql = f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES ({', '.join('?' * _N_COLUMNS)})"
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(sql, [_row(e) for e in events])
            if conn.total_changes - before == len(events):
                return [True] * len(events)  # the usual case: no retry among them
            # Some were duplicates: find which, inside the same transaction.
            ids = [e.event_id for e in events]
            firsts: dict[str, int] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                firsts.update(
                    conn.execute(
                        "SELECT event_id, seq FROM events WHERE event_id IN "
                        f"({', '.join('?' * len(chunk))})",
                        chunk,
                    ).fetchall()
                )
            # AUTOINCREMENT numbers this transaction's rows contiguously after the old maximum.
            new_from = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            new_from -= conn.total_changes - before
            seen: set[str] = set()
            for event_id in ids:
                stored.append(firsts.get(event_id, 0) > new_from and event_id not in seen)
                seen.add(event_id)
        return stored

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with _sqlite_errors():
            if self._memory:
                with self._lock:
                    if self._closed:
                        raise EventStoreUnavailableError("the event store is closed")
                    return self._writer.execute(sql, params).fetchall()
            return self._reader().execute(sql, params).fetchall()

    def read_since(self, after_seq: int, limit: int = 10_000) -> list[StoredEvent]:
        """See :meth:`EventStore.read_since`."""
        rows = self._query(
            f"SELECT seq, {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [StoredEvent(int(r[0]), _event(r[1:])) for r in rows]

    def get_event(self, event_id: str) -> Event | None:
        """See :meth:`EventStore.get_event` (the ``event_id`` unique index)."""
        rows = self._query(f"SELECT {_COLUMNS} FROM events WHERE event_id = ?", (event_id,))
        return _event(rows[0]) if rows else None

    def scan(
        self,
        start: float | None = None,
        end: float | None = None,
        types: Sequence[EventType] = (),
    ) -> Iterator[Event]:
        """See :meth:`EventStore.scan`."""
        sql, params = _scan_sql(start, end, types, "?")
        for row in self._query(sql, params):
            yield _event(row)

    def last_seq(self) -> int:
        """See :meth:`EventStore.last_seq`."""
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0])

    def count(self) -> int:
        """See :meth:`EventStore.count`."""
        return int(self._query("SELECT COUNT(*) FROM events")[0][0])

    def variant_counts(
        self,
        experiment_id: str,
        unit: Unit = "user",
        start: float | None = None,
        end: float | None = None,
    ) -> dict[str, VariantCounts]:
        """See :func:`experiment_counts` (one SQL query over the events carrying variants)."""
        _check_counts_args(experiment_id, unit)
        sql, params = _counts_sql("json_extract(variants, ?)", unit, start, end, "?")
        return _counts(self._query(sql, [f'$."{experiment_id}"', *params]))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        with self._lock, _sqlite_errors():
            if self._closed:
                raise EventStoreUnavailableError("the event store is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")  # waits up to timeout_s for another writer
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _delete(self, sql: str, params: Sequence[Any]) -> int:
        with self._transaction() as conn:
            return int(conn.execute(sql, params).rowcount)

    def forget_user(self, user_id: str) -> int:
        """See :meth:`EventStore.forget_user`."""
        with self._transaction() as conn:
            # Sessions first: a DELETE with a subquery on its own table may re-evaluate it
            # after the user's own rows are gone.
            sessions = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT session_id FROM events WHERE user_id = ?", (user_id,)
                )
            ]
            deleted = conn.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount
            for start in range(0, len(sessions), 500):
                chunk = sessions[start : start + 500]
                deleted += conn.execute(
                    f"DELETE FROM events WHERE session_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).rowcount
            conn.execute("INSERT INTO erasures (user_id, ts) VALUES (?, ?)", (user_id, time.time()))
            return int(deleted)

    def erasures_since(self, after_seq: int, limit: int = 10_000) -> list[Erasure]:
        """See :meth:`EventStore.erasures_since`."""
        rows = self._query(
            "SELECT seq, user_id, ts FROM erasures WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [Erasure(int(r[0]), str(r[1]), float(r[2])) for r in rows]

    def purge_erasures_before(self, timestamp: float) -> int:
        """See :meth:`EventStore.purge_erasures_before`."""
        return self._delete("DELETE FROM erasures WHERE ts < ?", (timestamp,))

    def purge_before(self, timestamp: float) -> int:
        """See :meth:`EventStore.purge_before`."""
        return self._delete("DELETE FROM events WHERE ts < ?", (timestamp,))

    def close(self) -> None:
        """See :meth:`EventStore.close`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._writer.close()


class PostgresEventStore:
    """Events in a PostgreSQL table, shared by several service replicas.

    Appends serialise on a transaction-level advisory lock, so sequence numbers become visible
    in commit order and an incremental reader (``read_since``) never skips an event committed
    late with a smaller number; erasures (the ``<table>_erasures`` log) do the same on their
    own lock. PostgreSQL's default ``synchronous_commit=on`` makes a commit durable before
    ``append`` returns. A lost connection fails the call in progress
    (:class:`EventStoreUnavailableError`) and is opened again by the next call.

    Args:
        dsn: A libpq connection string or URL (``"postgresql://user@host/db"``,
            ``"host=/tmp/sock dbname=events"``).
        table: Table name (letters, digits and underscores).
        connect_timeout_s: Seconds to wait for the server when (re)connecting.

    Raises:
        ImportError: ``psycopg`` is not installed.
        ValueError: ``table`` is not a plain identifier.
        EventStoreUnavailableError: The server cannot be reached.
    """

    _LOCK_KEY = 0x5EA7C4  # advisory lock id of the append critical section
    _ERASURE_LOCK_KEY = 0x5EA7C5  # ... and of the erasure log's

    def __init__(self, dsn: str, *, table: str = "events", connect_timeout_s: int = 5) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "install 'productsearch[postgres]' to keep events in PostgreSQL"
            ) from exc
        if not table.replace("_", "").isalnum() or not table[0].isalpha():
            raise ValueError(f"table must be a plain identifier, not {table!r}")
        self.table = table
        self.erasures_table = f"{table}_erasures"
        self._psycopg = psycopg
        self._dsn = dsn
        self._connect_timeout_s = max(1, int(connect_timeout_s))
        self._lock = threading.Lock()
        self._closed = False
        with self._errors():
            self._conn = self._connect()
            self._create_tables()

    def _connect(self) -> Any:
        return self._psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """PostgreSQL down or the connection lost -> :class:`EventStoreUnavailableError`."""
        try:
            yield
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
            raise EventStoreUnavailableError(f"PostgreSQL event store: {exc}") from exc

    def _connection(self) -> Any:
        """The open connection (call with ``_lock`` held inside :meth:`_errors`); one lost to
        a server restart is replaced."""
        if self._closed:
            raise EventStoreUnavailableError("the event store is closed")
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _create_tables(self) -> None:
        table = self.table
        self._conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {table} (
                seq BIGSERIAL PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                session_id TEXT NOT NULL,
                ts DOUBLE PRECISION NOT NULL,
                user_id TEXT,
                product_id TEXT,
                query TEXT,
                norm_query TEXT,
                position INTEGER,
                channel TEXT,
                results TEXT,
                variants TEXT,
                query_id TEXT
            )
            """
        )
        # Tables written by an older version lack the columns added since.
        for column in _ADDED_COLUMNS:
            self._conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} TEXT")
        self._conn.execute(
            f"CREATE INDEX IF NOT EXISTS {table}_variants ON {table} (ts) WHERE variants IS NOT NULL"
        )
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_ts ON {table} (ts)")
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_user ON {table} (user_id)")
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_session ON {table} (session_id)")
        erasures = self.erasures_table
        self._conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {erasures} (
                seq BIGSERIAL PRIMARY KEY,
                user_id TEXT NOT NULL,
                ts DOUBLE PRECISION NOT NULL
            )
            """
        )
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {erasures}_ts ON {erasures} (ts)")

    def _sql(self, sql: str) -> str:
        return sql.replace("FROM events", f"FROM {self.table}")

    def append(self, events: Sequence[Event]) -> list[bool]:
        """See :meth:`EventStore.append`."""
        if not events:
            return []
        sql = (
            f"INSERT INTO {self.table} ({_COLUMNS}) VALUES "
            f"({', '.join(['%s'] * _N_COLUMNS)}) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING seq"
        )
        stored: list[bool] = []
        with self._lock, self._errors():
            conn = self._connection()
            with conn.transaction():
                cursor = conn.cursor()
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self._LOCK_KEY,))
                cursor.executemany(sql, [_row(e) for e in events], returning=True)
                while True:
                    stored.append(cursor.fetchone() is not None)
                    if not cursor.nextset():
                        break
        return stored

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """``sql`` written against ``events``, run against this store's table."""
        return self._fetch(self._sql(sql), params)

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._errors():
            return list(self._connection().execute(sql, params).fetchall())

    def read_since(self, after_seq: int, limit: int = 10_000) -> list[StoredEvent]:
        """See :meth:`EventStore.read_since`."""
        rows = self._query(
            f"SELECT seq, {_COLUMNS} FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
            (after_seq, limit),
        )
        return [StoredEvent(int(r[0]), _event(r[1:])) for r in rows]

    def get_event(self, event_id: str) -> Event | None:
        """See :meth:`EventStore.get_event` (the ``event_id`` unique index)."""
        rows = self._query(f"SELECT {_COLUMNS} FROM events WHERE event_id = %s", (event_id,))
        return _event(rows[0]) if rows else None

    def scan(
        self,
        start: float | None = None,
        end: float | None = None,
        types: Sequence[EventType] = (),
    ) -> Iterator[Event]:
        """See :meth:`EventStore.scan`."""
        sql, params = _scan_sql(start, end, types, "%s")
        for row in self._query(sql, params):
            yield _event(row)

    def last_seq(self) -> int:
        """See :meth:`EventStore.last_seq`."""
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0])

    def count(self) -> int:
        """See :meth:`EventStore.count`."""
        return int(self._query("SELECT COUNT(*) FROM events")[0][0])

    def variant_counts(
        self,
        experiment_id: str,
        unit: Unit = "user",
        start: float | None = None,
        end: float | None = None,
    ) -> dict[str, VariantCounts]:
        """See :func:`experiment_counts` (one SQL query over the events carrying variants)."""
        _check_counts_args(experiment_id, unit)
        sql, params = _counts_sql("(variants::jsonb ->> %s)", unit, start, end, "%s")
        return _counts(self._query(sql, [experiment_id, *params]))

    def _delete(self, sql: str, params: Sequence[Any]) -> int:
        with self._lock, self._errors():
            conn = self._connection()
            with conn.transaction():
                return int(conn.execute(sql, params).rowcount)

    def forget_user(self, user_id: str) -> int:
        """See :meth:`EventStore.forget_user`."""
        t = self.table
        with self._lock, self._errors():
            conn = self._connection()
            with conn.transaction():
                deleted = conn.execute(
                    f"DELETE FROM {t} WHERE user_id = %s OR session_id IN "
                    f"(SELECT DISTINCT session_id FROM {t} WHERE user_id = %s)",
                    (user_id, user_id),
                ).rowcount
                # Numbered under a lock so log entries become visible in seq order.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._ERASURE_LOCK_KEY,))
                conn.execute(
                    f"INSERT INTO {self.erasures_table} (user_id, ts) VALUES (%s, %s)",
                    (user_id, time.time()),
                )
        return int(deleted)

    def erasures_since(self, after_seq: int, limit: int = 10_000) -> list[Erasure]:
        """See :meth:`EventStore.erasures_since`."""
        rows = self._fetch(
            f"SELECT seq, user_id, ts FROM {self.erasures_table} WHERE seq > %s "
            "ORDER BY seq LIMIT %s",
            (after_seq, limit),
        )
        return [Erasure(int(r[0]), str(r[1]), float(r[2])) for r in rows]

    def purge_erasures_before(self, timestamp: float) -> int:
        """See :meth:`EventStore.purge_erasures_before`."""
        return self._delete(f"DELETE FROM {self.erasures_table} WHERE ts < %s", (timestamp,))

    def purge_before(self, timestamp: float) -> int:
        """See :meth:`EventStore.purge_before`."""
        return self._delete(f"DELETE FROM {self.table} WHERE ts < %s", (timestamp,))

    def close(self) -> None:
        """See :meth:`EventStore.close`."""
        with self._lock:
            self._closed = True
            self._conn.close()


def experiment_counts(
    store: EventStore,
    experiment_id: str,
    unit: Unit = "user",
    start: float | None = None,
    end: float | None = None,
) -> dict[str, VariantCounts]:
    """An experiment's units, clicked units and converted units per variant, from the events
    carrying its variant (the input of :func:`merchandising.experiments.report`).

    A unit (see :func:`unit_key`) is exposed to a variant when at least one of its events
    carries it; it clicked (converted) when at least one of its clicks (purchases) carries it.
    A unit seen in two variants (a shopper who signed in and so changed unit) counts in both.
    Stores with a ``variant_counts`` method (SQLite, PostgreSQL) count in SQL; others are
    scanned and counted by :func:`merchandising.experiments.tally`.

    Args:
        store: The event store.
        experiment_id: The experiment.
        unit: The experiment's unit.
        start: Only events from this time (Unix seconds), inclusive; None: unbounded.
        end: Only events before this time, exclusive; None: unbounded.

    Returns:
        Variant name -> counts, for the variants that have events.

    Raises:
        ValueError: a malformed experiment id or an unknown unit.
    """
    _check_counts_args(experiment_id, unit)
    in_sql = getattr(store, "variant_counts", None)
    if in_sql is not None:
        counts: dict[str, VariantCounts] = in_sql(experiment_id, unit, start, end)
        return counts
    return tally(
        (e.variants[experiment_id], unit_key(e, unit), e.type.value)
        for e in store.scan(start, end)
        if e.variants is not None and experiment_id in e.variants
    )


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What became of each event of a batch.

    Attributes:
        accepted: Indexes (in the batch) of events stored now.
        duplicates: Indexes of events already stored (a retried batch); acknowledged too.
        rejected: Index -> the problems that kept the event out.
        event_ids: Index -> the id each valid event was stored under.
    """

    accepted: tuple[int, ...] = ()
    duplicates: tuple[int, ...] = ()
    rejected: Mapping[int, tuple[FieldError, ...]] = field(default_factory=dict)
    event_ids: Mapping[int, str] = field(default_factory=dict)


ServedLookup = Callable[[str], Event | None]
"""``query_id -> the server's record of that search answer`` (None when unknown)."""


def served_event_id(query_id: str) -> str:
    """The event id under which the server records the search answer ``query_id``."""
    return SERVED_PREFIX + query_id


def same_shopper(served: Event, event: Event) -> bool:
    """Whether ``event`` comes from the shopper the search answer ``served`` was made for.

    The same ``user_id`` (when the search named one) or the same session; a search made with
    neither (``session_id`` ``served:<query_id>``) binds to nobody, so anyone holding its
    ``query_id`` may refer to it.
    """
    if served.session_id.startswith(SERVED_PREFIX):
        return True
    if served.user_id is not None and event.user_id == served.user_id:
        return True
    return event.session_id == served.session_id


def attribute(event: Event, served: Event | None) -> Event:
    """Attribute an event carrying a ``query_id`` to the server's record of that answer.

    The record, not the client, says what the query was and where the product was shown:
    ``query`` and ``position`` are taken from it (the client's claims are ignored).

    Args:
        event: A click, view, add-to-cart or purchase with ``query_id``.
        served: The server's record of that answer (:func:`served_event_id`), or None.

    Returns:
        The event with the answer's ``query`` and the product's ``position`` in it.

    Raises:
        InvalidEventError: The ``query_id`` is unknown (never answered, or its record is
            gone), belongs to another shopper's search, or the product was not in that answer.
    """
    if served is None or served.type is not EventType.SEARCH or served.query_id != event.query_id:
        raise InvalidEventError(
            [
                FieldError(
                    "query_id",
                    "is unknown: no search answer of this service has this id (send the "
                    "query_id of the search answer the shopper chose from, unchanged)",
                )
            ]
        )
    if not same_shopper(served, event):
        raise InvalidEventError(
            [
                FieldError(
                    "query_id",
                    "belongs to another shopper's search: send the user_id or session_id the "
                    "search was made with",
                )
            ]
        )
    if event.type is EventType.SEARCH:
        return dataclasses.replace(event, query=served.query, results=served.results)
    results = served.results or ()
    if event.product_id not in results:
        raise InvalidEventError(
            [
                FieldError(
                    "product_id",
                    f"{event.product_id!r} was not among the results of that query_id "
                    "(a product from another page or search has that answer's query_id)",
                )
            ]
        )
    position = (served.position or 1) + results.index(event.product_id)
    return dataclasses.replace(event, query=served.query, position=position)


def ingest(
    store: EventStore,
    items: Sequence[Any],
    *,
    idempotency_key: str | None = None,
    now: float | None = None,
    served: ServedLookup | None = None,
) -> BatchOutcome:
    """Validate a batch and store its good events in one durable write.

    An event carrying a ``query_id`` is attributed to the server's record of that answer
    (:func:`attribute`): its ``query`` and ``position`` come from the record, and an unknown
    ``query_id`` or one of another shopper's search is rejected. A ``search`` event with a
    known ``query_id`` repeats what the server recorded itself: it is acknowledged as a
    duplicate and not stored again. Ids starting with ``served:`` are the server's: rejected.

    Args:
        store: Where to keep them.
        items: Decoded JSON values, one per event.
        idempotency_key: The batch's key: an event without ``event_id`` is stored under
            ``"<key>:<index>"``, so a retry of the same batch is recognised event by event.
        now: The server's clock.
        served: Looks up the server's record of a ``query_id``; None reads it from ``store``
            (:func:`served_event_id`).

    Returns:
        Per event: accepted, duplicate or rejected (with reasons).
    """
    now = time.time() if now is None else now
    lookup: ServedLookup = served or (lambda query_id: store.get_event(served_event_id(query_id)))
    valid: list[tuple[int, Event]] = []
    recorded: dict[int, str] = {}
    rejected: dict[int, tuple[FieldError, ...]] = {}
    for i, item in enumerate(items):
        default_id = f"{idempotency_key}:{i}" if idempotency_key else None
        try:
            event = parse_event(item, now=now, default_event_id=default_id)
            if event.event_id.startswith(SERVED_PREFIX):
                raise InvalidEventError(
                    [
                        FieldError(
                            "event_id",
                            f"ids starting with {SERVED_PREFIX!r} are reserved for the "
                            "server's records of its search answers",
                        )
                    ]
                )
            query_id = event.query_id
            if query_id is not None:
                event = attribute(event, lookup(query_id))
                if event.type is EventType.SEARCH:
                    recorded[i] = served_event_id(query_id)
                    continue
            valid.append((i, event))
        except InvalidEventError as exc:
            rejected[i] = exc.errors
    stored = store.append([e for _, e in valid])
    accepted = tuple(i for (i, _), new in zip(valid, stored, strict=True) if new)
    duplicates = tuple(
        sorted([i for (i, _), new in zip(valid, stored, strict=True) if not new] + [*recorded])
    )
    event_ids = {i: e.event_id for i, e in valid} | recorded
    return BatchOutcome(accepted, duplicates, rejected, event_ids)
